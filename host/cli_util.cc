#include "cli_util.h"

#include <iostream>

#include "error.h"

namespace sprout {

cxxopts::ParseResult parse_subcommand(cxxopts::Options& options, const std::vector<std::string>& args,
                                      bool* help_shown) {
  options.add_options()("h,help", "show this help");
  std::vector<std::string> storage;
  storage.push_back(options.program());
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  auto result = options.parse(static_cast<int>(argv.size()), argv.data());
  *help_shown = result.count("help") > 0;
  if (*help_shown) std::cout << options.help() << std::endl;
  if (!result.unmatched().empty())
    throw cxxopts::exceptions::no_such_option(result.unmatched().front());
  return result;
}

Spec spec_option(const cxxopts::ParseResult& args) {
  if (!args.count("spec")) throw InputError("missing --spec FILE");
  return load_spec(args["spec"].as<std::string>());
}

}  // namespace sprout
