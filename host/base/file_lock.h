// An flock(2) on a lock file, waited for with a deadline: released when the holder
// closes it or dies, however it dies. The image cache's lock and the dynamic uid
// registry's are this.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>

namespace sprout {

class FileLock {
 public:
  enum Mode { shared, exclusive };
  /// Opens (creating, 0600) and locks `path`, waiting at most `timeout`; `on_wait` is
  /// called once if it has to wait. std::runtime_error whose message is `busy` when
  /// the deadline passes; std::system_error when the file cannot be opened or locked.
  FileLock(const std::filesystem::path& path, Mode mode, std::chrono::milliseconds timeout, const std::string& busy,
           const std::function<void()>& on_wait = nullptr);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace sprout
