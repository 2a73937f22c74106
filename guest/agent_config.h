// The agent's configuration: /etc/sprout/agent.json (written by nixos/guest.nix), read
// strictly (unknown keys and wrong types are InputError naming the key). A missing
// file means all defaults. Keys (all optional except "version"):
//   version                       1
//   mountPoints.config|self|ssh|closure
//                                 guest paths; ssh null = never mount the ssh disk;
//                                 closure (host-built VMs) default /run/sprout/closure
//   rebuild.command               argv prefix, default ["nixos-rebuild","boot"]
//   rebuild.timeoutSeconds|maxAttempts|respecializeOnChange
//                                 fallbacks; the manifest's values win
//   rebootCommand                 default ["systemctl","reboot"]
//   stateDir                      default /var/lib/sprout
//   diskWaitSeconds               how long to wait for disks to appear, default 10
//   flushTimeoutSeconds           how long to wait for a host to take queued status, default 10
//   statusPort                    virtio-serial port name, default sprout.status.0
//   logFile                       every status event, one JSON line each; default STATEDIR/agent.log
//   nixBinDir                     where nix, nix-store and nix-env are (host-built VMs);
//                                 default "": looked up on PATH
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace sprout::agent {

struct AgentConfig {
  std::string config_mount = "/etc/nixos";
  std::string self_mount = "/etc/nixos/hosts/self";
  std::optional<std::string> ssh_mount = std::string("/root/.ssh");
  std::string closure_mount = "/run/sprout/closure";
  std::string nix_bin_dir;  ///< "" = PATH
  std::vector<std::string> rebuild_command{"nixos-rebuild", "boot"};
  std::int64_t rebuild_timeout_seconds = 3600;
  std::int64_t max_attempts = 3;
  bool respecialize_on_change = true;
  std::vector<std::string> reboot_command{"systemctl", "reboot"};
  std::string state_dir = "/var/lib/sprout";
  double disk_wait_seconds = 10;
  double flush_timeout_seconds = 10;
  std::string status_port = "sprout.status.0";
  std::string log_file;  ///< empty: state_dir + "/agent.log"

  std::string effective_log_file() const { return log_file.empty() ? state_dir + "/agent.log" : log_file; }
};

/// Parses config text; InputError naming `source` and the key on anything wrong.
AgentConfig parse_agent_config(const std::string& text, const std::string& source);

/// Reads `path`; a missing file gives the defaults (`*missing` set true when given).
AgentConfig load_agent_config(const std::string& path, bool* missing = nullptr);

}  // namespace sprout::agent
