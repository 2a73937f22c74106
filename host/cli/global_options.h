// The options every `sprout` command takes (today: --log-level), accepted before the
// command name and after it alike: `sprout --log-level debug status` and
// `sprout status --log-level debug` mean the same.
#pragma once

#include <string>
#include <vector>

namespace sprout {

struct GlobalOptions {
  std::string log_level = "info";
};

/// Removes every `--log-level LEVEL` and `--log-level=LEVEL` from `args` (the
/// arguments after the program name) up to a `--`, which ends the options: what
/// follows it is left alone (arguments for another program). The last one wins.
/// A missing value or a level that is not trace, debug, info, warn, error, critical
/// or off is an InputError.
GlobalOptions take_global_options(std::vector<std::string>& args);

/// For the end of --help: the global options and where they go (lines, each ending in \n).
const char* global_options_help();

}  // namespace sprout
