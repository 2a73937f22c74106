// NAR hashes as Nix writes them: "sha256:" then 64 hex digits (`nix-store --dump-db`,
// sprout's narinfos) or Nix's 52-digit base 32 (`nix copy`'s narinfos). The host checks
// the NARs it writes against Nix's database, the guest the NARs it unpacks against
// the closure disk's narinfos.
#pragma once

#include <string>

namespace sprout {

/// Whether `recorded` (a NAR hash in either form above) is the SHA-256 whose hex is
/// `sha256_hex`.
bool same_nar_hash(const std::string& recorded, const std::string& sha256_hex);

/// Nix's base 32 of a hash given in hex (what `nix hash to-base32` prints).
std::string nix_base32_of_hex(const std::string& hex);

}  // namespace sprout
