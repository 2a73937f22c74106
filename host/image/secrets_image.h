// The VM's secrets disk, STATE/secrets.img: its identity (identity/: the ssh host key
// pair and the machine-id, identity/vm_identity.h) and the files of its
// sources.secrets (secrets/), in an ext4 image whose root and directories are 0700
// and whose private files are 0400, all owned by root: in the guest, root alone reads
// them. The image is the VM's own: built in its state directory (0400), never in the
// shared cache, never shared or linked, never named in a log line by what it holds.
// It is rebuilt (atomically) only when what it holds changed: STATE/secrets.key keeps
// a keyed digest of its contents, which says nothing about them.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "identity/secrets_source.h"
#include "identity/vm_identity.h"
#include "spec/state_dir.h"

namespace sprout {

struct SecretsImage {
  std::filesystem::path image;  ///< STATE/secrets.img
  bool rebuilt = false;
  std::uint64_t bytes = 0;
};

/// Writes the secrets disk for `identity` and `secrets` (empty: the identity alone)
/// unless the one in `state` already holds exactly that.
SecretsImage write_secrets_image(const StateDir& state, const VmIdentity& identity,
                                 const std::vector<SecretFile>& secrets);

}  // namespace sprout
