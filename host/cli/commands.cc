#include "cli/commands.h"

#include <algorithm>
#include <string_view>

namespace sprout {

const std::vector<const Command*>& all_commands() {
  // Alphabetical, as `sprout help` lists them.
  static const std::vector<const Command*> kAll = {
      &kCheckHostCommand, &kCheckSpecCommand, &kConsoleCommand, &kDefineCommand,  &kDestroyCommand,
      &kDomainXmlCommand, &kExportCommand,    &kGcCommand,      &kIdentityCommand, &kListCommand,   &kLogsCommand,
      &kPrepareCommand,   &kRunCommand,       &kSshCommand,     &kStartCommand,   &kStatusCommand,  &kStopCommand,
      &kUndefineCommand,  &kWaitCommand,      &kWatchCommand,
  };
  return kAll;
}

namespace {

/// `args` with everything after the first positional word (the NAME) moved behind a
/// "--", so that the parser leaves it alone: `sprout ssh web uname -a` runs `uname -a`.
/// An option's value is told from a positional by the options `o` declares.
std::vector<std::string> protect_rest(const cxxopts::Options& o, const std::vector<std::string>& args) {
  auto takes_value = [&](std::string_view word) {
    std::string_view name = word.substr(word.find_first_not_of('-'));
    if (name.find('=') != std::string_view::npos) return false;  // --opt=value
    for (const auto& opt : o.group_help("").options)
      if (opt.s == name || std::find(opt.l.begin(), opt.l.end(), name) != opt.l.end())
        return !opt.is_boolean && !opt.has_implicit;
    return false;
  };
  std::vector<std::string> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& w = args[i];
    if (w == "--") {
      out.insert(out.end(), args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
      return out;
    }
    if (w.size() > 1 && w[0] == '-') {
      out.push_back(w);
      if (takes_value(w) && i + 1 < args.size()) out.push_back(args[++i]);
      continue;
    }
    out.push_back(w);  // the NAME; the rest is the program's
    out.push_back("--");
    std::size_t rest = i + 1;
    if (rest < args.size() && args[rest] == "--") ++rest;  // `NAME -- COMMAND`, as the docs once said
    out.insert(out.end(), args.begin() + static_cast<std::ptrdiff_t>(rest), args.end());
    return out;
  }
  return out;
}

}  // namespace

int run_command(const Command& command, const std::vector<std::string>& args) {
  cxxopts::Options o(std::string("sprout ") + command.name, command.about);
  declare_needs(o, command.needs);
  if (command.options) command.options(o);
  auto inv = invoke(o, command.rest_after_name ? protect_rest(o, args) : args, command.needs);
  if (!inv) return 0;  // --help
  return command.run(*inv);
}

}  // namespace sprout
