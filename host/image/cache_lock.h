// The image cache's lock: exports hold it shared while they build and link images,
// gc holds it exclusively while it decides what is unused and removes it, so gc never
// removes an image an export has just committed but not yet linked. flock(2) on
// CACHE/.lock (base/file_lock.h): released when the process dies, however it dies.
// Waiting is bounded.
#pragma once

#include <chrono>
#include <filesystem>

#include "base/file_lock.h"

namespace sprout {

class CacheLock {
 public:
  enum Mode { shared, exclusive };
  /// Takes the lock, waiting at most `timeout`; std::runtime_error naming the cache
  /// when it stays busy. Creates the lock file (0600) when missing.
  CacheLock(const std::filesystem::path& cache_dir, Mode mode,
            std::chrono::milliseconds timeout = std::chrono::minutes(10));

 private:
  FileLock lock_;
};

}  // namespace sprout
