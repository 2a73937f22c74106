// sprout: turns one common NixOS base VM into many specialized VMs.
#include <signal.h>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>

#include <cxxopts.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/terminal_text.h"
#include "cli/commands.h"
#include "error.h"
#include "cli/global_options.h"
#include "log.h"
#include "strict_json.h"
#include "version.h"

namespace {

const sprout::Command* find_command(const std::string& name) {
  for (const auto* c : sprout::all_commands())
    if (name == c->name) return c;
  return nullptr;
}

void usage(std::ostream& out) {
  out << fmt::format("sprout {}: turns one common NixOS base VM into many specialized VMs\n\n", sprout::kVersion)
      << "Usage: sprout [--log-level LEVEL] COMMAND [OPTIONS]\n"
         "  or:  sprout help [COMMAND]\n"
         "  or:  sprout --version\n\nCommands:\n";
  for (const auto* c : sprout::all_commands()) out << fmt::format("  {:<11} {}\n", c->name, c->summary);
  out << "\n`sprout help COMMAND` (or `sprout COMMAND --help`) describes a command's options.\n"
      << "\n" << sprout::global_options_help();
}

/// ", did you mean 'status'?" for a command name typed wrong, else "".
std::string did_you_mean(const std::string& typed) {
  std::vector<std::string> names;
  for (const auto* c : sprout::all_commands()) names.push_back(c->name);
  names.push_back("help");
  std::string best = sprout::nearest_word(typed, names);
  return best.empty() ? "" : fmt::format("; did you mean '{}'?", best);
}

}  // namespace

int main(int argc, char** argv) {
  // An inherited "ignore SIGCHLD" would have the kernel reap our children before we
  // can wait for them.
  ::signal(SIGCHLD, SIG_DFL);
  std::vector<std::string> args(argv + 1, argv + argc);
  std::string level;
  try {
    level = sprout::take_global_options(args).log_level;
  } catch (const sprout::InputError& e) {
    std::cerr << "sprout: " << e.what() << "\n";
    return sprout::kExitUsage;
  }
  sprout::setup_logging("sprout", level);
  if (args.empty() || args[0] == "-h" || args[0] == "--help" || (args[0] == "help" && args.size() == 1)) {
    usage(args.empty() ? std::cerr : std::cout);
    return args.empty() ? sprout::kExitUsage : sprout::kExitOk;
  }
  // `help help` is help; `help --version` and git's `-v` are the version.
  if (args[0] == "help" && args.size() == 2 && (args[1] == "help" || args[1] == "--help" || args[1] == "-h")) {
    usage(std::cout);
    return sprout::kExitOk;
  }
  if (args[0] == "--version" || args[0] == "-v" || args[0] == "-V" ||
      (args[0] == "help" && args.size() == 2 && args[1] == "--version")) {
    std::cout << "sprout " << sprout::kVersion << "\n";
    return sprout::kExitOk;
  }
  // `sprout help CMD` is `sprout CMD --help`.
  if (args[0] == "help") {
    if (args.size() > 2) {
      std::cerr << fmt::format("sprout help: unexpected argument '{}' (see `sprout help help`)\n",
                               sprout::for_terminal(args[2]));
      return sprout::kExitUsage;
    }
    args = {args[1], "--help"};
  }
  const sprout::Command* command = find_command(args[0]);
  if (!command) {
    // One line, as git says it: the whole usage would bury the word that was wrong.
    if (args[0].starts_with("-"))
      std::cerr << fmt::format("sprout: unknown option '{}' before the command (see `sprout help`)\n",
                               sprout::for_terminal(args[0]));
    else
      std::cerr << fmt::format("sprout: '{}' is not a sprout command{} (see `sprout help`)\n",
                               sprout::for_terminal(args[0]), did_you_mean(args[0]));
    return sprout::kExitUsage;
  }
  std::vector<std::string> rest(args.begin() + 1, args.end());
  try {
    return sprout::run_command(*command, rest);
  } catch (const sprout::InputError& e) {
    spdlog::error("{}", e.what());
    return sprout::kExitUsage;
  } catch (const cxxopts::exceptions::exception& e) {
    spdlog::error("sprout {}: {} (see `sprout {} --help`)", args[0], e.what(), args[0]);
    return sprout::kExitUsage;
  } catch (const std::filesystem::filesystem_error& e) {
    // Not the library's "filesystem error: cannot ...: Reason [path] [path]": the
    // path, what failed and why, in the words a user can act on.
    std::string op = e.what();
    auto from = op.find(": ");
    op = from == std::string::npos ? op : op.substr(from + 2);
    auto to = op.find(": ");
    if (to != std::string::npos) op.resize(to);
    spdlog::error("{}: {} ({}); check the directory's permissions, mount and type", e.path1().string(), e.code().message(),
                  op);
    return sprout::kExitFailure;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return sprout::kExitFailure;
  }
}
