// A canonical walk of a directory tree: entries in byte-wise sorted order of their
// relative paths (parents before children), symlinks reported and never followed.
// Only regular files, directories and symlinks are acceptable; a fifo, socket,
// device file or unreadable directory is an InputError naming the path.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace sprout {

struct TreeEntry {
  std::string rel;          ///< path relative to the root, '/'-separated; "" for the root
  std::string abs;          ///< the path on the host: the root as given, then '/' and rel
  struct stat st;           ///< lstat() of the entry
  std::string link_target;  ///< for symlinks
};

/// Decides whether an entry (and, for a directory, everything under it) is walked.
using TreeFilter = std::function<bool(const TreeEntry&)>;

/// Calls `visit` for the root and every entry under it that `filter` accepts, in
/// canonical order, once the whole tree has been listed (list_tree). Each directory
/// is read whole and its entries stat'ed relative to it (fstatat): one open directory
/// at a time, however deep the tree.
/// Throws InputError when `root` is missing or not a directory, or for an entry of an
/// unsupported type; std::system_error for other I/O failures.
void walk_tree(const std::filesystem::path& root, const std::function<void(const TreeEntry&)>& visit,
               const TreeFilter& filter = {});

/// The walked entries of a tree, in canonical order (the root first).
struct TreeListing {
  std::vector<TreeEntry> entries;
};

/// The entries walk_tree would visit, moved into one list. `expected_entries` sizes
/// the list up front (e.g. from the last walk of the same tree); a small one (under
/// 1,000) has it listed on one thread.
TreeListing list_tree(const std::filesystem::path& root, const TreeFilter& filter = {},
                      std::size_t expected_entries = 0);

}  // namespace sprout
