#include "image/cache_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace sprout {

CacheLock::CacheLock(const std::filesystem::path& cache_dir, Mode mode, std::chrono::milliseconds timeout) {
  auto path = cache_dir / ".lock";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "cannot open the cache lock " + path.string());
  int op = (mode == shared ? LOCK_SH : LOCK_EX) | LOCK_NB;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool told = false;
  while (::flock(fd_, op) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) {
      int err = errno;
      ::close(fd_);
      throw std::system_error(err, std::generic_category(), "cannot lock " + path.string());
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      ::close(fd_);
      throw std::runtime_error(fmt::format("{}: the image cache stayed busy (another sprout export or gc) for {} s; "
                                           "try again",
                                           cache_dir.string(), timeout.count() / 1000));
    }
    if (!told) spdlog::info("waiting for another sprout export or gc to finish with {}", cache_dir.string());
    told = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

CacheLock::~CacheLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace sprout
