// Copying exactly a listed tree: the entries of a TreeListing (and nothing a second
// walk would find) into an empty private directory, with the bytes that were copied
// hashed on the way. Every file and directory is opened relative to its parent's
// descriptor with O_NOFOLLOW and must still be the inode that was listed (device,
// inode, type, size, mtime, ctime); symlinks are recreated from the listed target,
// hard links among listed files are kept. A tree that changes under the copy is an
// error, never a silent mix.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "tree.h"

namespace sprout {

/// What was copied: the hex SHA-256 of each regular file's copied bytes, by rel path.
struct CopiedTree {
  std::map<std::string, std::string> content_hashes;
};

/// Copies `listing` (of the tree at listing.entries[0].abs) into `dst`, an existing
/// empty directory. Directories stay 0700 (so more can be added, e.g. a manifest)
/// until apply_directory_modes. Throws InputError when an entry changed since it was
/// listed, std::system_error on I/O errors.
CopiedTree copy_listing(const TreeListing& listing, const std::filesystem::path& dst);

/// Gives the copy's directories (the root: `dst` itself) their listed modes.
void apply_directory_modes(const TreeListing& listing, const std::filesystem::path& dst);

}  // namespace sprout
