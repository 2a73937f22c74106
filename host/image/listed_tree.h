// Reading exactly a listed tree: the entries of a TreeListing, and nothing a second
// walk would find. Every directory and file is opened relative to its parent's
// descriptor with O_NOFOLLOW and must still be the inode that was listed (device,
// inode, type; for files also size, mtime and ctime, before and after the read). A
// tree that changes under the reader is an InputError naming the path, never a mix.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "image/tree.h"
#include "image/tree_digest.h"

namespace sprout {

/// `rel`'s parent ("" for an entry of the root) and last component.
std::string parent_of(const std::string& rel);
std::string name_of(const std::string& rel);

class ListedTreeReader {
 public:
  /// Opens the listing's root (which the user may have given as a symlink: list_tree
  /// follows it once); InputError if it is no longer the listed directory.
  explicit ListedTreeReader(const TreeListing& listing);
  ~ListedTreeReader();
  ListedTreeReader(const ListedTreeReader&) = delete;
  ListedTreeReader& operator=(const ListedTreeReader&) = delete;

  /// The open descriptor of listed directory `rel` ("" = the root), opening and
  /// checking what lies between; cheapest when entries are visited in listing order.
  int directory(const std::string& rel);

  /// Streams listed regular file `i` to `sink` in chunks, in order, and returns the
  /// hex SHA-256 of exactly the bytes streamed. InputError if it changed since it was
  /// listed or while it was read, or is not readable.
  std::string read_file(std::size_t i, const std::function<void(const char*, std::size_t)>& sink);

  /// The tree digest (tree_digest.h) of the listing, its files read through here;
  /// with `known`, only the files it does not know unchanged are read (it is asked,
  /// never told).
  std::string content_digest(ContentHashCache* known = nullptr);

 private:
  struct Level;
  const TreeListing& listing_;
  std::map<std::string, std::size_t> dirs_;
  std::vector<Level> stack_;
};

}  // namespace sprout
