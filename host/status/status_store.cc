#include "status/status_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "atomic_file.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

StatusStore::StatusStore(fs::path state_dir, StatusStoreOptions options)
    : dir_(std::move(state_dir)), options_(options) {
  open_events();
}

StatusStore::~StatusStore() {
  if (events_fd_ >= 0) ::close(events_fd_);
}

void StatusStore::open_events() {
  if (events_fd_ >= 0) ::close(events_fd_);
  events_fd_ = ::open(events_path().c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, StateDir::kFileMode);
  events_size_ = 0;
  if (events_fd_ < 0) {
    spdlog::warn("{}: cannot open: {}", events_path().string(), std::strerror(errno));
    return;
  }
  struct stat st{};
  if (::fstat(events_fd_, &st) == 0) events_size_ = static_cast<std::uint64_t>(st.st_size);
}

void StatusStore::write_status(const StatusRecord& record) {
  // Compact: indentation would multiply a deeply nested detail many times over.
  write_file_atomic(status_path(), record.to_json().dump(-1, ' ', false, json::error_handler_t::replace) + "\n",
                    StateDir::kFileMode);
}

void StatusStore::append_event(const json& event) {
  std::string line = event.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  if (events_fd_ >= 0 && events_size_ + line.size() > options_.max_events_bytes && events_size_ > 0) {
    fs::path old = StateDir{dir_}.events_rotated();
    if (::rename(events_path().c_str(), old.c_str()) != 0) {
      spdlog::warn("{}: cannot rotate: {}", events_path().string(), std::strerror(errno));
    } else {
      ++rotations_;
    }
    open_events();
  }
  if (events_fd_ < 0) {
    open_events();
    if (events_fd_ < 0) {
      ++write_failures_;
      return;
    }
  }
  ssize_t n = ::write(events_fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    ++write_failures_;
    if (write_failures_ == 1 || write_failures_ % 1000 == 0)
      spdlog::warn("{}: write failed ({} so far): {}", events_path().string(), write_failures_,
                   n < 0 ? std::strerror(errno) : "short write");
    return;
  }
  events_size_ += line.size();
}

}  // namespace sprout
