// The agent's early mode (`sprout-agent --early`), run before sshd and anything that
// reads secrets (the guest module orders its unit so): it finds the VM's secrets disk
// (common/disk_role.h, bounded wait), mounts it read-only, nosuid, nodev, noexec on a
// 0700 directory, and from it
//   - installs the VM's ssh host key where sshd reads it: /etc/ssh/ssh_host_ed25519_key
//     (0600) and .pub (0644), each replaced atomically, only when it differs;
//   - offers each secret as /run/sprout/secrets/NAME (directory 0700, files 0400, all
//     root's), removing names the disk no longer has;
//   - says whether systemd took the machine-id the host gave (SMBIOS type 11 credential
//     system.machine_id; systemd 254 and later read it) by comparing /etc/machine-id;
// then unmounts it. No secrets disk (a host older than identities): nothing to do, exit 0.
// Returns the exit status: 0 done, 1 failed (said on stderr, for the journal). Never throws.
#pragma once

#include <chrono>
#include <string>

#include "mounter.h"

namespace sprout::agent {

struct EarlyOptions {
  std::string root = "/";
  std::chrono::milliseconds disk_wait{10000};
  std::string ssh_dir = "/etc/ssh";
  std::string secrets_dir = "/run/sprout/secrets";
  /// Where the disk is mounted while it is read (0700; unmounted afterwards).
  std::string mount_point = "/run/sprout/secrets-disk";
};

int run_early(const EarlyOptions& options, Mounter& mounter);

}  // namespace sprout::agent
