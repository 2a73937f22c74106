// The host's Nix store, through Nix's own commands (nix-store, nix): what sprout asks
// of it to hand a host-built system to a guest. Every command has a timeout; a path
// Nix does not know is an InputError naming it, any other failure a runtime_error
// with Nix's own last lines. Output that is data is read from stdout alone.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "nar_hash.h"

namespace sprout {

/// What Nix's database records about one valid store path (`nix-store --dump-db`).
struct PathRegistration {
  std::string path;
  std::string nar_hash;  ///< "sha256:<hex>"
  std::uint64_t nar_size = 0;
  std::string deriver;   ///< "" when unknown
  std::vector<std::string> references;
};

/// Parses `nix-store --dump-db` output (path, hash, size, deriver, count, references;
/// one line each). runtime_error on anything else.
std::vector<PathRegistration> parse_dump_db(const std::string& text);

/// The closure of `path` (`nix-store --query --requisites`), sorted.
std::vector<std::string> nix_requisites(const std::string& path);

/// The registrations of `paths` (all valid), in the order given.
std::vector<PathRegistration> nix_registrations(const std::vector<std::string>& paths);

/// The .narinfo text of a path in an uncompressed binary cache whose NAR is at `url`
/// (relative to the cache), as `nix copy --to file://DIR?compression=none` writes it
/// (the file is the NAR: FileHash and FileSize are the NAR's).
std::string narinfo_for(const PathRegistration& r, const std::string& url);

/// The .narinfo text of a path that is left off a binary cache (it is in the base the
/// guest already has): Nix reads it to walk the closure and skips it as valid in the
/// guest's store; its NAR is not on the disk (URL says so, should a guest lack it).
std::string narinfo_for_absent_path(const PathRegistration& r);

/// What `nix copy --to file://` writes into nix-cache-info for this store.
inline constexpr const char* kNixCacheInfo = "StoreDir: /nix/store\n";

inline constexpr const char* kAbsentNarUrl = "nar/in-the-base-system-not-on-this-disk.nar";

}  // namespace sprout
