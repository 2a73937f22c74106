// One run of the agent: the whole boot-time story (docs/agent.md).
//   1. find the disks (bounded wait)   2. mount them   3. decide from manifest + state
//   4. specialize (rebuild, reboot) or report specialized / failed
// Everything below `root`; mounting through a Mounter (unit tests use a fake);
// `cancel_fd` becoming readable (SIGTERM) stops the rebuild and ends the run as
// `failed: interrupted`. Returns the exit status: 0 specialized or rebooting,
// 1 failed. Never throws.
#pragma once

#include <string>

#include "agent_config.h"
#include "mounter.h"

namespace sprout::agent {

struct AgentOptions {
  std::string root = "/";
  AgentConfig config;
  bool config_missing = false;     ///< reported in the starting event
  std::string config_path;
  std::string status_port_path;    ///< host path of the port to write; empty: find it by name
  int cancel_fd = -1;
  /// This program (host path), run as `--import-closure` by host-built VMs; "" =
  /// sprout-agent on PATH.
  std::string self_exe;
};

int run_agent(const AgentOptions& options, Mounter& mounter);

}  // namespace sprout::agent
