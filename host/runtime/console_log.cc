#include "runtime/console_log.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

namespace sprout {

namespace fs = std::filesystem;

void ConsoleLogCap::tick() {
  auto now = Clock::now();
  if (now < next_) return;
  next_ = now + every_;
  std::error_code ec;
  auto size = fs::file_size(path_, ec);
  if (ec || size <= cap_) return;
  fs::path old = path_;
  old += ".1";
  fs::copy_file(path_, old, fs::copy_options::overwrite_existing, ec);
  if (ec) {
    spdlog::warn("{}: over {} MiB and cannot be kept as {}: {}; truncating it", path_.string(), cap_ >> 20,
                 old.string(), ec.message());
  }
  if (::truncate(path_.c_str(), 0) != 0) {
    spdlog::warn("{}: cannot truncate: {}", path_.string(), std::strerror(errno));
    return;
  }
  ++rotations_;
  spdlog::info("{}: over {} MiB; the older part is now {}", path_.string(), cap_ >> 20, old.string());
}

}  // namespace sprout
