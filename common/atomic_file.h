// Atomic file replacement: data goes to a temporary file in the target's directory,
// is fsync'ed, renamed over the target, and the directory is fsync'ed. A crash at
// any point leaves either the old file or the new one, never a mix.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string_view>

namespace sprout {

enum class Durability {
  durable,  ///< fsync'ed before and after the rename: survives a crash
  /// Renamed into place unsynced: readers never see a mix, but a crash may leave the
  /// old file or an empty one. For caches, which are rebuilt when unreadable.
  cache,
};

/// Replaces `path` with `data` atomically (mode `mode`). Throws std::system_error.
void write_file_atomic(const std::filesystem::path& path, std::string_view data, mode_t mode = 0644,
                       Durability durability = Durability::durable);

/// Points `link` at `target` atomically: a new symlink under a temporary name (with the
/// pid, leftovers.h) renamed over `link`, whatever `link` was. Throws std::system_error.
void symlink_atomic(const std::filesystem::path& target, const std::filesystem::path& link);

/// fsync() of a directory, so a rename or new entry in it is durable.
void fsync_directory(const std::filesystem::path& dir);

/// A temporary path next to `target` that is removed unless commit() moved it into
/// place. For outputs written by other programs (mkfs.ext4, qemu-img).
class PendingFile {
 public:
  explicit PendingFile(std::filesystem::path target);
  ~PendingFile();
  PendingFile(const PendingFile&) = delete;
  PendingFile& operator=(const PendingFile&) = delete;

  const std::filesystem::path& temp_path() const { return temp_; }
  /// fsyncs the temporary file, renames it over the target and fsyncs the directory.
  void commit();
  /// The same, onto another name in the same directory.
  void commit_as(const std::filesystem::path& target);

 private:
  std::filesystem::path target_;
  std::filesystem::path temp_;
  bool committed_ = false;
};

}  // namespace sprout
