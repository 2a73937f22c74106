// Writing a read-only ext4 image in process with libext2fs, from a TreeListing: the
// filesystem is laid out as mke2fs lays it out for these options (4 KiB blocks,
// 256-byte inodes, extents, flex_bg, metadata checksums, no journal, no resize
// inode, lost+found; no default mount options), and every listed entry is written from the bytes read for it
// (listed_tree.h), which are hashed on the way: the caller gets the hash of exactly
// what the image holds, so nothing has to walk the tree a second time.
// The same listing, bytes, label and seed give a byte-identical image: the UUID and
// directory hash seed come from the seed, every inode is owned by root and stamped
// with kExportTimestamp, and allocation follows the listing's order.
// Images up to 64 MiB are built in memory (memory_image.h) and written out once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "image/ext4_image.h"
#include "image/tree.h"

namespace sprout {

class Ext4Writer {
 public:
  /// An empty filesystem sized for `size` (image_size_for) that will be written to
  /// `out`, a new temporary path (replaced if it exists). `seed_hex` (>= 32 hex
  /// digits) fixes the UUID and the directory hash seed.
  Ext4Writer(const std::filesystem::path& out, const std::string& label, const std::string& seed_hex,
             const TreeSize& size);
  ~Ext4Writer();  ///< abandons an unfinished image
  Ext4Writer(const Ext4Writer&) = delete;
  Ext4Writer& operator=(const Ext4Writer&) = delete;

  /// Writes the listing's entries (the root takes the listed root's mode): what a
  /// file holds is what was read from it, checked against the listing. Returns the
  /// hex SHA-256 of each regular file's bytes, by rel path (hard links share one
  /// inode and one hash). InputError when the tree changed since it was listed.
  std::map<std::string, std::string> add_listing(const TreeListing& listing);

  /// Adds the regular file `path` with these bytes: a name in the root, or
  /// "DIR/NAME" in a directory add_directory() made; InputError if the name is taken.
  void add_file(const std::string& path, std::string_view bytes, unsigned mode);

  /// Adds the directory `name` in the root, with `mode`; InputError if the name is taken.
  void add_directory(const std::string& name, unsigned mode);

  /// The root directory's permission bits (add_listing gives it the listed root's).
  void set_root_mode(unsigned mode);

  /// Adds the regular file `rel` ("NAME" in the root, or "DIR/NAME" in a directory
  /// made by ensure_directories) of exactly `size` bytes, which `fill` hands, in
  /// chunks of any size, to the sink it is given; they go straight into the blocks
  /// allocated for the file. std::runtime_error naming the file when `fill` gives
  /// more or fewer bytes; InputError if the name is taken.
  using Sink = std::function<void(const char*, std::size_t)>;
  void add_streamed_file(const std::string& rel, unsigned mode, std::uint64_t size,
                         const std::function<void(const Sink&)>& fill);

  /// Creates the directories ("a/b", from the root, mode 0755) that are missing: mount
  /// points the guest needs inside a read-only disk. InputError if a component
  /// exists and is not a directory.
  void ensure_directories(const std::vector<std::string>& paths);

  /// Writes the finished filesystem to `out` (no fsync: the caller commits it).
  void finish();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace sprout
