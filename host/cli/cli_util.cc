#include "cli/cli_util.h"

#include <iostream>

#include <fmt/format.h>

#include "error.h"
#include "option_error.h"
#include "cli/global_options.h"
#include "cli/vm_locator.h"

namespace sprout {

namespace {

/// cxxopts' parse of `args`; nothing when --help was given (the help is printed).
std::optional<cxxopts::ParseResult> parse_options(cxxopts::Options& options, const std::vector<std::string>& args) {
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
      throw InputError(option_error(program, e.what()));
    }
  }();
  if (result.count("help")) {
    std::cout << options.help() << "\n" << global_options_help() << std::flush;
    return std::nullopt;
  }
  if (!result.unmatched().empty())
    throw InputError(unexpected_argument(program, result.unmatched().front()));
  return result;
}

}  // namespace

void declare_needs(cxxopts::Options& options, Needs needs) {
  switch (needs) {
    case Needs::nothing: break;
    case Needs::one_vm:
      add_vm_options(options);
      options.parse_positional({"vm"});
      break;
    case Needs::spec_dir: add_spec_dir_option(options); break;
  }
}

std::optional<Invocation> invoke(cxxopts::Options& options, const std::vector<std::string>& args, Needs needs) {
  auto parsed = parse_options(options, args);
  if (!parsed) return std::nullopt;
  Invocation inv{std::move(*parsed), std::nullopt, {}};
  switch (needs) {
    case Needs::nothing: break;
    case Needs::one_vm:
      inv.spec_dir = spec_dir_from(inv.args);
      inv.vm = locate_vm(inv.args);
      break;
    case Needs::spec_dir: inv.spec_dir = spec_dir_from(inv.args); break;
  }
  return inv;
}

}  // namespace sprout
