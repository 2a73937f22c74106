// A persistent ContentHashCache for one source tree, kept as a small text file under
// the image cache (.digest-cache/), mapped and searched in place (an
// unchanged re-export of 10,000 files allocates next to nothing for it). An entry is trusted only while the file's size,
// mtime, ctime, inode and device are unchanged — as git trusts its index — and files
// changed within the last two seconds are never cached (their timestamps could still
// hide a same-second change). A missing or garbled cache file just means rehashing.
#pragma once

#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "image/tree_digest.h"

namespace sprout {

class DigestCacheFile : public ContentHashCache {
 public:
  /// Loads the cache for `source_root` from `cache_dir` (nothing if absent/garbled).
  DigestCacheFile(const std::filesystem::path& cache_dir, const std::filesystem::path& source_root);
  ~DigestCacheFile();
  DigestCacheFile(const DigestCacheFile&) = delete;
  DigestCacheFile& operator=(const DigestCacheFile&) = delete;

  std::optional<std::string> lookup(const std::string& rel, const struct stat& st) override;
  void store(const std::string& rel, const struct stat& st, const std::string& hash) override;

  /// How many files the loaded cache knows (a hint for sizing the walk's listing).
  std::size_t known_files() const { return loaded_.size(); }

  /// Writes the cache back (atomically) if anything changed; keeps only entries seen
  /// in this walk. Failures are logged, never fatal.
  void save();

 private:
  /// A line of the loaded file; the views point into the mapped file.
  struct Line {
    std::string_view rel, identity, hash;
  };
  struct Entry {
    std::string identity, hash;
  };

  std::filesystem::path file_;
  std::mutex mutex_;
  void* map_ = nullptr;                  ///< the file, mapped read-only
  std::size_t map_size_ = 0;
  std::vector<Line> loaded_;             ///< sorted by rel
  std::vector<bool> seen_;               ///< loaded_[i] matched a file of this walk
  std::map<std::string, Entry> stored_;  ///< hashes computed in this walk
};

}  // namespace sprout
