// Building a read-only ext4 image from a directory on disk with `mkfs.ext4 -d` (no
// root, no loop device, no mount), then normalizing it with libext2fs so that the
// same tree gives a byte-identical image: fixed UUID and directory hash seed derived
// from a digest, fixed timestamps on every inode, everything owned by root. Used for
// the closure image (store paths staged on disk); the roles' trees are written in
// process from their listing (ext4_writer.h), with the sizing rules below.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "image/tree.h"

namespace sprout {

/// The fixed time (seconds since the epoch) stamped on every exported inode.
inline constexpr std::uint32_t kExportTimestamp = 1;

struct TreeSize {
  std::uint64_t files = 0, dirs = 0, symlinks = 0;
  std::uint64_t data_bytes = 0;  ///< file contents rounded up to 4 KiB blocks
};

/// Image size in bytes for a tree: content plus metadata plus a margin, at least 8 MiB,
/// a multiple of 1 MiB.
std::uint64_t image_size_for(const TreeSize& t);

/// Counts what the tree at `dir` needs.
TreeSize measure_tree(const std::filesystem::path& dir);
/// Adds one walked entry to `t` (for callers that walk the tree anyway).
void account_entry(TreeSize& t, const TreeEntry& e);

/// Builds `out` (overwriting it: callers pass a temporary path) from `dir`.
/// `seed_hex` (>= 32 hex digits) fixes the UUID and hash seed.
void build_ext4_image(const std::filesystem::path& dir, const std::string& label, const std::string& seed_hex,
                      const std::filesystem::path& out);

/// Sets every in-use inode's times to kExportTimestamp and its owner to root:root,
/// and removes every extended attribute (mkfs.ext4 -d copies them; digests do not
/// cover them).
void normalize_ext4_image(const std::filesystem::path& image);

/// "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" from the first 32 hex digits of `hex`.
std::string uuid_from_hex(const std::string& hex);

}  // namespace sprout
