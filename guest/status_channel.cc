#include "status_channel.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include <spdlog/spdlog.h>

#include "root_path.h"

namespace sprout::agent {

using Clock = std::chrono::steady_clock;

std::string find_virtio_port(const std::string& root, const std::string& name) {
  // udev's link (NixOS has it by the time the agent runs): no directory scan.
  std::string link = "/dev/virtio-ports/" + name;
  if (name.find('/') == std::string::npos && ::access(under_root(root, link).c_str(), F_OK) == 0) return link;
  std::string dir = under_root(root, "/sys/class/virtio-ports");
  DIR* d = ::opendir(dir.c_str());
  if (!d) return {};
  std::string found;
  while (auto* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string port = e->d_name;
    if (read_small_file(dir + "/" + port + "/name", 256) != name) continue;
    std::string node = under_root(root, "/dev/" + port);
    if (::access(node.c_str(), F_OK) != 0) {
      std::string majmin = read_small_file(dir + "/" + port + "/dev");
      auto colon = majmin.find(':');
      if (colon != std::string::npos) {
        unsigned ma = static_cast<unsigned>(std::atoi(majmin.substr(0, colon).c_str()));
        unsigned mi = static_cast<unsigned>(std::atoi(majmin.substr(colon + 1).c_str()));
        if (::mknod(node.c_str(), S_IFCHR | 0600, makedev(ma, mi)) != 0 && errno != EEXIST)
          spdlog::warn("cannot create {} for status port {}: {}", node, name, std::strerror(errno));
      }
    }
    found = "/dev/" + port;
    break;
  }
  ::closedir(d);
  return found;
}

int StatusChannel::open_port(const std::string& device) {
  return ::open(device.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
}

StatusChannel::StatusChannel(int fd, const std::string& log_path, std::string boot_id, std::size_t max_queued)
    : fd_(fd), boot_id_(std::move(boot_id)), max_queued_(max_queued < 2 ? 2 : max_queued) {
  if (!log_path.empty()) {
    std::error_code ec;
    ensure_directory(parent_dir(log_path), ec);
    // Keep the log bounded: over 1 MiB it moves aside (one old copy).
    struct stat st;
    if (::stat(log_path.c_str(), &st) == 0 && st.st_size > (1 << 20))
      ::rename(log_path.c_str(), (log_path + ".1").c_str());
    log_fd_ = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd_ < 0) log_error_ = log_path + ": " + std::strerror(errno);
  }
}

StatusChannel::~StatusChannel() {
  write_console();
  if (fd_ >= 0) ::close(fd_);
  if (log_fd_ >= 0) ::close(log_fd_);
}

void StatusChannel::set_vm(const std::string& vm) { vm_ = vm; }

void StatusChannel::send(Phase phase, std::string message, nlohmann::json detail) {
  StatusEvent e;
  e.vm = vm_;
  e.boot_id = boot_id_;
  e.seq = ++seq_;
  e.time_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch()).count();
  e.phase = phase;
  e.message = std::move(message);
  e.generation = generation_;
  e.detail = std::move(detail);
  if (log_fd_ >= 0) {
    StatusEvent copy = e;
    if (copy.vm.empty()) copy.vm = "unknown";
    std::string line = encode_status_line(copy);
    ssize_t n = ::write(log_fd_, line.data(), line.size());
    (void)n;
  }
  console_held_.emplace_back(phase, e.message);
  if (fd_ >= 0) {
    if (queue_.size() >= max_queued_) {
      // Drop the oldest log line that is not being written, else the oldest event.
      auto first = queue_.begin() + (pending_valid_ ? 1 : 0);
      auto victim = first;
      for (auto it = first; it != queue_.end(); ++it)
        if (it->phase == Phase::log) {
          victim = it;
          break;
        }
      if (victim != queue_.end()) {
        queue_.erase(victim);
        ++dropped_;
      }
    }
    queue_.push_back(std::move(e));
    pump();
  }
  if (!vm_.empty()) write_console();
}

void StatusChannel::write_console() {
  for (auto& [phase, message] : console_held_) {
    if (phase == Phase::log) spdlog::debug("{}", message);
    else spdlog::info("{}: {}", phase_name(phase), message);
  }
  console_held_.clear();
}

bool StatusChannel::pump() {
  if (fd_ < 0) return true;
  while (!queue_.empty()) {
    if (!pending_valid_) {
      if (vm_.empty()) return false;  // hold until the VM's name is known
      StatusEvent& e = queue_.front();
      e.vm = vm_;
      if (e.generation.empty()) e.generation = generation_;
      pending_ = encode_status_line(e);
      pending_valid_ = true;
    }
    ssize_t n = ::write(fd_, pending_.data(), pending_.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;  // EAGAIN (no host / full), EPIPE, ...: retry later
    }
    pending_.erase(0, static_cast<std::size_t>(n));
    if (pending_.empty()) {
      pending_valid_ = false;
      queue_.pop_front();
      ++sent_;
    }
  }
  return true;
}

bool StatusChannel::flush(std::chrono::milliseconds timeout) {
  if (vm_.empty()) vm_ = "unknown";
  pump();
  write_console();
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pump()) return true;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLOUT, 0};
    int wait_ms = static_cast<int>(std::min<std::int64_t>(left.count(), 100));
    int r = ::poll(&p, 1, wait_ms);
    if (r > 0 && (p.revents & POLLOUT)) continue;
    // POLLHUP without POLLOUT (nobody connected) returns at once: sleep instead of spinning.
    if (r > 0 || r < 0) std::this_thread::sleep_for(std::chrono::milliseconds(std::min(wait_ms, 50)));
  }
}

}  // namespace sprout::agent
