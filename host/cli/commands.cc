#include "cli/commands.h"

namespace sprout {

const std::vector<const Command*>& all_commands() {
  // Alphabetical, as `sprout help` lists them.
  static const std::vector<const Command*> kAll = {
      &kCheckHostCommand, &kCheckSpecCommand, &kConsoleCommand, &kDefineCommand,  &kDestroyCommand,
      &kDomainXmlCommand, &kExportCommand,    &kGcCommand,      &kListCommand,    &kLogsCommand,
      &kPrepareCommand,   &kRunCommand,       &kSshCommand,     &kStatusCommand,  &kStopCommand,
      &kUndefineCommand,  &kWaitCommand,      &kWatchCommand,
  };
  return kAll;
}

int run_command(const Command& command, const std::vector<std::string>& args) {
  cxxopts::Options o(std::string("sprout ") + command.name, command.about);
  declare_needs(o, command.needs);
  if (command.options) command.options(o);
  auto inv = invoke(o, args, command.needs);
  if (!inv) return 0;  // --help
  return command.run(*inv);
}

}  // namespace sprout
