#include "cli/cli_util.h"

#include <iostream>

#include <fmt/format.h>

#include "error.h"
#include "cli/global_options.h"

namespace sprout {

cxxopts::ParseResult parse_subcommand(cxxopts::Options& options, const std::vector<std::string>& args,
                                      bool* help_shown) {
  options.add_options()("h,help", "show this help");
  std::vector<std::string> storage;
  storage.push_back(options.program());
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  const std::string& program = options.program();
  auto result = [&] {
    try {
      return options.parse(static_cast<int>(argv.size()), argv.data());
    } catch (const cxxopts::exceptions::exception& e) {
      // cxxopts quotes with U+2018/U+2019; say it plainly, with where to look.
      std::string m = e.what();
      for (const char* q : {"\u2018", "\u2019"})
        for (std::size_t at; (at = m.find(q)) != std::string::npos;) m.replace(at, std::string_view(q).size(), "'");
      throw InputError(fmt::format("{}: {} (see `{} --help`)", program, m, program));
    }
  }();
  *help_shown = result.count("help") > 0;
  if (*help_shown) std::cout << options.help() << "\n" << global_options_help() << std::flush;
  if (!result.unmatched().empty())
    throw InputError(fmt::format("{}: unexpected argument '{}' (see `{} --help`)", program, result.unmatched().front(),
                                 program));
  return result;
}

Spec spec_option(const cxxopts::ParseResult& args) {
  if (!args.count("spec")) throw InputError("missing --spec FILE");
  return load_spec(args["spec"].as<std::string>());
}

}  // namespace sprout
