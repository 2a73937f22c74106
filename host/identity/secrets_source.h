// A VM's secrets (spec key sources.secrets): the regular files directly in one
// directory, each read once into memory and checked there, so what is hashed is
// exactly what goes onto the VM's secrets disk. Anything else in the directory (a
// symlink, a subdirectory, a device, a FIFO, a socket), a name the guest could not
// offer as /run/sprout/secrets/NAME, a file over kMaxSecretBytes or more than
// kMaxSecrets files is refused with an InputError naming it, before anything is written.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

namespace sprout {

inline constexpr std::size_t kMaxSecretBytes = 1 << 20;
inline constexpr std::size_t kMaxSecrets = 256;
inline constexpr std::size_t kMaxSecretsTotalBytes = 16 << 20;

struct SecretFile {
  std::string name;   ///< its file name, which is its name in the guest
  std::string bytes;
};

/// The secrets in `dir`, sorted by name.
std::vector<SecretFile> read_secrets(const std::filesystem::path& dir);

/// Empty when `name` may name a secret; else why not.
std::string secret_name_problem(const std::string& name);

/// The digest of the secrets keyed with `key` (HMAC-SHA256, lowercase hex), so that
/// it reveals nothing about a short secret: what the manifest carries.
std::string secrets_digest(const std::vector<SecretFile>& secrets, const std::string& key);

}  // namespace sprout
