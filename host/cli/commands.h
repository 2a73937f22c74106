// The `sprout` commands, one table: each declares its name, its one-line summary (for
// `sprout help`), its --help text, what it is about (cli_util.h's Needs: one VM, the
// spec directory, or nothing), its own options and what it runs. main.cc parses every
// command's arguments the same way from its entry, locates what it needs, and calls it.
// A command returns the process exit status: 0 success, 1 runtime failure, 2 usage or
// input error (thrown as InputError or a cxxopts exception and mapped in main.cc).
#pragma once

#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "cli/cli_util.h"

namespace sprout {

struct Command {
  const char* name;
  const char* summary;  ///< one line, for `sprout help`
  const char* about;    ///< the start of `sprout NAME --help`
  Needs needs;
  void (*options)(cxxopts::Options&);  ///< the command's own options (nullptr: none)
  int (*run)(const Invocation&);
  /// Everything after the VM's NAME belongs to the program the command runs (as ssh's
  /// remote command does), and goes to its "command" positional unparsed.
  bool rest_after_name = false;
};

extern const Command kExportCommand, kPrepareCommand, kGcCommand, kCheckSpecCommand, kCheckHostCommand,
    kRunCommand, kWatchCommand, kStatusCommand, kListCommand, kLogsCommand, kConsoleCommand, kSshCommand,
    kWaitCommand, kDomainXmlCommand, kDefineCommand, kUndefineCommand, kStartCommand, kStopCommand, kDestroyCommand,
    kIdentityCommand;

/// Every command, in the order `sprout help` lists them.
const std::vector<const Command*>& all_commands();

/// Runs `command` on the arguments after its name: its options (what it needs, then
/// its own), --help, parsing, locating; then the command itself.
int run_command(const Command& command, const std::vector<std::string>& args);

}  // namespace sprout
