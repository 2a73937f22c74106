// A VM's identity, minted by the host and kept in its state directory, STATE/identity
// (0700, files 0600): its ssh host key (ed25519, made by the real ssh-keygen), its
// machine-id, and a random key that keys the digest of its secrets (so that digest,
// which the manifest carries, says nothing about a short secret). Minted once, on the
// VM's first export; the same through reboots, re-specialization, baseChange
// "recreate" and a host restart. rotate_ssh_host_key() replaces the host key (the old
// one is kept in identity/old/TIME/); `destroy --delete-disks` removes it. An identity
// that exists but cannot be read is an error, never a reason to mint another.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spec/state_dir.h"

namespace sprout {

struct SshHostKey {
  std::string type;         ///< "ssh-ed25519"
  std::string public_line;  ///< "ssh-ed25519 AAAA... root@NAME", as in the .pub file
  std::string fingerprint;  ///< "SHA256:...", as ssh-keygen -l prints it
  std::string file_name;    ///< "ssh_host_ed25519_key" (the .pub beside it)
};

struct VmIdentity {
  std::filesystem::path dir;  ///< STATE/identity
  std::string machine_id;     ///< 32 lowercase hex digits, a random (v4) id as systemd makes one
  std::vector<SshHostKey> host_keys;
};

/// Held while an identity is minted, rotated or written onto the secrets disk
/// (STATE/identity.lock), so two of those never interleave.
class IdentityLock {
 public:
  explicit IdentityLock(const StateDir& state);
  ~IdentityLock();
  IdentityLock(const IdentityLock&) = delete;
  IdentityLock& operator=(const IdentityLock&) = delete;

 private:
  struct Held;
  Held* held_;
};

/// The identity in `state`, minted first when there is none (atomically: a complete
/// identity or none). Takes the IdentityLock unless the caller holds it (`locked`). std::runtime_error naming the file when one exists but cannot
/// be read or is incomplete, or when ssh-keygen fails.
VmIdentity ensure_identity(const StateDir& state, const std::string& vm_name, bool locked = false);

/// The identity in `state`, or nullopt when it has none; errors as ensure_identity.
std::optional<VmIdentity> read_identity(const StateDir& state);

/// A private file of the identity (a host key, the digest key), read; bounded.
std::string read_identity_secret(const VmIdentity& id, const std::string& file_name);

/// The file that holds the key for the digest of the VM's secrets.
inline constexpr const char* kSecretsDigestKeyFile = "secrets-digest-key";

/// Replaces the ssh host key with a new one, atomically; the old key pair moves to
/// identity/old/TIME/. The machine-id and the digest key stay. Returns the new
/// identity. std::runtime_error when there is no identity yet (nothing to rotate), or
/// when the file system cannot swap two directories in one step (renameat2).
VmIdentity rotate_ssh_host_key(const StateDir& state, const std::string& vm_name);

/// "SHA256:<base64, unpadded>" of an OpenSSH public key line ("TYPE BASE64 [COMMENT]");
/// std::invalid_argument when the line is not one.
std::string ssh_fingerprint(std::string_view public_line);

}  // namespace sprout
