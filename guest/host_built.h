// Switching to a system the host built (host-built VMs, docs/agent.md): the steps
// `nixos-rebuild boot` takes after its build, run on a closure the host handed over.
//   1. the closure disk must hold the system (its HASH.narinfo), else it was made for
//      another system and nothing runs;
//   2. sprout-agent --import-closure CLOSURE --system SYSTEM   (closure_import.h: every
//      NAR unpacked and checked against its narinfo's hash before any path is
//      registered; the disk comes from the hypervisor, so no signature)
//   3. nix-store --check-validity SYSTEM
//   4. nix-env -p /nix/var/nix/profiles/system --set SYSTEM
//   5. SYSTEM/bin/switch-to-configuration boot
// Each runs like a rebuild (rebuild.h): timeout (one budget for all), cancel fd,
// output streamed to `on_line` and appended to the log file. The first that fails ends
// the run; the outcome says which step and why.
#pragma once

#include <string>
#include <vector>

#include "rebuild.h"

namespace sprout::agent {

struct HostBuiltRun {
  std::string root = "/";          ///< prefixes the guest paths the agent reads itself
  std::string system;              ///< the toplevel (guest path)
  std::string closure_mount;       ///< where the closure disk is mounted (guest path)
  std::string nix_bin_dir;         ///< "" = PATH
  std::string agent_exe;           ///< this agent (host path) for --import-closure; "" = PATH
  std::chrono::milliseconds timeout{0};
  int cancel_fd = -1;
  std::filesystem::path log_file;  ///< host path; truncated first; empty = none
  std::function<void(std::string_view)> on_line;
};

/// The commands of steps 2-5, in order (for the `rebuilding` event and the tests).
std::vector<std::vector<std::string>> host_built_commands(const HostBuiltRun& run);

/// Runs steps 1-5. `describe` names the failed step ("importing the closure: exited
/// with status 1").
RebuildOutcome run_host_built(const HostBuiltRun& run);

}  // namespace sprout::agent
