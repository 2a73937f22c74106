// Running the rebuild. The command line is the agent config's prefix plus, from the
// manifest, `-I nixos-config=TARGET --no-flake` (classic: never the tree's flake.nix)
// or `--flake TARGET --no-write-lock-file` (flake: the config disk is read-only), then
// the extra arguments. It runs with a timeout and a cancel fd (SIGTERM); run_process
// stops the whole process group either way. Every output line goes to `on_line`
// (the agent streams them as `log` events) and into the rebuild log file.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "rebuild_settings.h"
#include "subprocess.h"

namespace sprout::agent {

std::vector<std::string> rebuild_argv(const std::vector<std::string>& prefix, const RebuildSettings& r);

struct RebuildRun {
  std::vector<std::string> argv;
  std::chrono::milliseconds timeout{0};
  int cancel_fd = -1;
  std::filesystem::path log_file;  ///< host path; truncated first; empty = none
  bool append_log = false;         ///< append to log_file instead (a later step of one run)
  std::function<void(std::string_view)> on_line;
};

struct RebuildOutcome {
  bool ok = false;
  bool timed_out = false;
  bool interrupted = false;
  std::string describe;                 ///< "exited with status 1", "timed out after 5s", ...
  std::vector<std::string> last_lines;  ///< the last 20 lines of output
  double seconds = 0;
};

RebuildOutcome run_rebuild(const RebuildRun& run);

}  // namespace sprout::agent
