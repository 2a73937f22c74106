// What every exported ext4 image shares, however it is written (ext4_writer.h): the
// fixed timestamp on every inode, the sizing rules (content plus metadata plus a
// margin) and the UUID made from a digest, so that the same content gives a
// byte-identical image.
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

/// Adds one walked entry to `t` (for callers that walk the tree anyway).
void account_entry(TreeSize& t, const TreeEntry& e);

/// "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" from the first 32 hex digits of `hex`.
std::string uuid_from_hex(const std::string& hex);

}  // namespace sprout
