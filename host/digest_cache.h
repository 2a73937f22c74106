// A persistent ContentHashCache for one source tree, kept as a small text file under
// the image cache (.digest-cache/). An entry is trusted only while the file's size,
// mtime, ctime, inode and device are unchanged — as git trusts its index — and files
// changed within the last two seconds are never cached (their timestamps could still
// hide a same-second change). A missing or garbled cache file just means rehashing.
#pragma once

#include <filesystem>
#include <map>
#include <mutex>
#include <string>

#include "tree_digest.h"

namespace sprout {

class DigestCacheFile : public ContentHashCache {
 public:
  /// Loads the cache for `source_root` from `cache_dir` (nothing if absent/garbled).
  DigestCacheFile(const std::filesystem::path& cache_dir, const std::filesystem::path& source_root);

  std::optional<std::string> lookup(const std::string& rel, const struct stat& st) override;
  void store(const std::string& rel, const struct stat& st, const std::string& hash) override;

  /// Writes the cache back (atomically) if anything changed; keeps only entries seen
  /// in this walk. Failures are logged, never fatal.
  void save();

 private:
  struct Entry {
    std::string key;  ///< stat identity
    std::string hash;
  };
  static std::string identity(const struct stat& st);

  std::filesystem::path file_;
  std::mutex mutex_;
  std::map<std::string, Entry> loaded_, current_;
  bool dirty_ = false;
};

}  // namespace sprout
