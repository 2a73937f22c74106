// A disk image built in memory (a memfd) and then written to its file in one pass.
// Building a small image where it will live costs what the disk makes every write
// cost: mkfs.ext4 fsyncs the image it made, and so does every libext2fs pass over it.
// In memory those fsyncs are free; the finished bytes are then written once, only the
// blocks that are not all zeros (the rest stays a hole, which reads back as zeros), so
// the file holds exactly the bytes built, and the caller's one fsync (PendingFile)
// makes it durable. Nothing is left behind by a crash: a memfd goes with its process.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

namespace sprout {

/// Images up to this size are built in memory and written out once; bigger ones
/// where they will stay (no second copy in memory).
inline constexpr std::uint64_t kMemoryImageMax = 64ull << 20;

class MemoryImage {
 public:
  /// An empty in-memory file; std::system_error when memfd_create fails.
  MemoryImage();
  ~MemoryImage();
  MemoryImage(const MemoryImage&) = delete;
  MemoryImage& operator=(const MemoryImage&) = delete;

  /// A path that opens this file, for this process and its children (mkfs.ext4):
  /// /proc/PID/fd/N.
  const std::filesystem::path& path() const { return path_; }

  /// Creates `out` (which must not exist: callers pass a temporary name) with mode
  /// 0600 and the same bytes, all-zero blocks left as holes; starts its writeback.
  /// Returns the bytes of data written. std::system_error on I/O errors.
  std::uint64_t write_to(const std::filesystem::path& out) const;

 private:
  int fd_ = -1;
  std::filesystem::path path_;
};

}  // namespace sprout
