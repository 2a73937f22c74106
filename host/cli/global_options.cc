#include "cli/global_options.h"

#include <set>

#include <fmt/format.h>

#include "error.h"

namespace sprout {

GlobalOptions take_global_options(std::vector<std::string>& args) {
  static const std::set<std::string> kLevels = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  static const std::string kFlag = "--log-level";
  GlobalOptions g;
  for (std::size_t i = 0; i < args.size() && args[i] != "--";) {
    const std::string& a = args[i];
    std::string level;
    if (a == kFlag) {
      if (i + 1 >= args.size() || args[i + 1] == "--")
        throw InputError("--log-level needs a value (trace, debug, info, warn, error, critical or off)");
      level = args[i + 1];
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i), args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
    } else if (a.starts_with(kFlag + "=")) {
      level = a.substr(kFlag.size() + 1);
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
      continue;
    }
    if (!kLevels.contains(level))
      throw InputError(
          fmt::format("unknown --log-level '{}' (use trace, debug, info, warn, error, critical or off)", level));
    g.log_level = level;
  }
  return g;
}

const char* global_options_help() {
  return "Global options, before or after the command:\n"
         "  --log-level LEVEL  trace, debug, info (the default), warn, error, critical or off\n";
}

}  // namespace sprout
