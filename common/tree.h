// A canonical walk of a directory tree: entries in byte-wise sorted order of their
// relative paths (parents before children), symlinks reported and never followed.
// Only regular files, directories and symlinks are acceptable; a fifo, socket,
// device file or unreadable directory is an InputError naming the path.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <functional>
#include <string>

namespace sprout {

struct TreeEntry {
  std::string rel;            ///< path relative to the root, '/'-separated; "" for the root
  std::filesystem::path abs;  ///< absolute path on the host
  struct stat st;             ///< lstat() of the entry
  std::string link_target;    ///< for symlinks
};

/// Decides whether an entry (and, for a directory, everything under it) is walked.
using TreeFilter = std::function<bool(const TreeEntry&)>;

/// Calls `visit` for the root and every entry under it that `filter` accepts.
/// Throws InputError when `root` is missing or not a directory, or for an entry of an
/// unsupported type; std::system_error for other I/O failures.
void walk_tree(const std::filesystem::path& root, const std::function<void(const TreeEntry&)>& visit,
               const TreeFilter& filter = {});

}  // namespace sprout
