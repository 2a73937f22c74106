// The closure disk of a host-built VM: the store paths of its system's closure that
// are not in its base system's closure, as an uncompressed Nix binary cache (the
// layout `nix copy --to file://DIR?compression=none` writes), plus each NAR's XXH3-128
// (`sprout-nar-xxh3`, nar_checksum.h), on a read-only ext4 image the guest imports
// (`sprout-agent --import-closure`, guest/closure_import.h; an older agent runs `nix
// copy --from file://...`, which reads the same layout). Written in process in one pass (ext4_writer.h): each NAR read
// from the store once (nar_writer.h) into its file in the image, hashed on the way and
// checked against the host's Nix database, whose records (`nix-store --dump-db`) give
// the narinfos; no staged copy, no Nix process but the queries.
// Paths of the base that the system refers to get a narinfo without a NAR, so the
// guest's Nix can walk the closure and skips them as already valid.
// Cached by (system, base system): VMs with one system share one image, and an
// unchanged system is not built again (no Nix command runs on a cache hit).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace sprout {

struct ClosureRequest {
  std::string system;       ///< the toplevel store path
  std::string base_system;  ///< "" = hand over the whole closure
  std::filesystem::path cache_dir;
};

struct ClosureImage {
  std::filesystem::path image;  ///< CACHE/closure-KEY.ext4
  std::string key;              ///< hex SHA-256 of (format, system, base system)
  bool cache_hit = false;
  std::size_t paths = 0;        ///< store paths with their NAR on the disk (0 on a hit)
  std::uint64_t nar_bytes = 0;  ///< their NARs' size (0 on a hit)
};

/// The cache key alone (what the manifest's disks.closure.digest says).
std::string closure_key(const std::string& system, const std::string& base_system);

/// Checks that `system` is a NixOS toplevel in the host's store and builds (or finds)
/// its image. InputError for a path that is not in the store, not valid, or not a
/// toplevel (no bin/switch-to-configuration); runtime_error when Nix fails.
/// The caller holds the cache lock.
ClosureImage build_closure_image(const ClosureRequest& request);

inline constexpr const char* kClosureInfoFile = "sprout-closure.json";

}  // namespace sprout
