// Nix GC roots for base images. A base in /nix/store that an overlay uses must not be
// garbage-collected, so `prepare` registers a root (a symlink under the spec's
// gcRootDir, default /nix/var/nix/gcroots/sprout) named after the VM, pointing at the
// base the overlay actually uses (and NAME@root.qcow2.old-... for an overlay that the
// recreate policy kept aside; NAME@overlay-origin.json for the base system a
// host-built VM's overlay was made with). `sprout gc` removes roots that no VM spec uses any
// more and cached images that no VM links to (image_users.h); it never touches overlays.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "spec/spec.h"

namespace sprout {

/// The Nix store directory (NIX_STORE_DIR or /nix/store).
std::filesystem::path nix_store_dir();

/// Registers `<gc_root_dir>/<vm>` -> `base` when `base` is in the Nix store. Returns
/// the root's path, or nullopt when no root is needed.
std::optional<std::filesystem::path> register_gc_root(const std::filesystem::path& gc_root_dir,
                                                      const std::string& vm, const std::filesystem::path& base);

struct GcReport {
  std::vector<std::filesystem::path> removed_roots, removed_images, kept_images;
  /// User records (image_users.h) that no longer count, and their leftovers.
  std::vector<std::filesystem::path> dropped_user_records;
};

/// Removes roots in the root dirs that none of `specs` uses, and images in the cache
/// dirs that no user record (image_users.h) and none of `specs` uses (an image linked
/// before user records existed has no record: only `specs` can keep it). Drops the
/// records that no longer count, and records the links of `specs` that have none.
/// With dry_run nothing is removed or recorded, only reported.
GcReport collect_garbage(const std::vector<Spec>& specs, const std::vector<std::filesystem::path>& cache_dirs,
                         const std::vector<std::filesystem::path>& root_dirs, bool dry_run);

}  // namespace sprout
