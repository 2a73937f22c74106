#include "base/leftovers.h"

#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <charconv>

#include <spdlog/spdlog.h>

namespace sprout {

namespace fs = std::filesystem;

namespace {

std::optional<pid_t> pid_at(const std::string& name, std::size_t pos) {
  pid_t pid = 0;
  const char* first = name.data() + pos;
  const char* last = name.data() + name.size();
  auto [end, ec] = std::from_chars(first, last, pid);
  if (ec != std::errc() || end == first || (end != last && *end != '-') || pid <= 0) return std::nullopt;
  return pid;
}

}  // namespace

std::optional<pid_t> temporary_owner(const std::string& name) {
  if (name.rfind(".staging-", 0) == 0) return pid_at(name, 9);
  if (name.size() < 2 || name[0] != '.') return std::nullopt;
  auto at = name.rfind(".tmp-");
  if (at == std::string::npos || at == 0) return std::nullopt;
  return pid_at(name, at + 5);
}

bool process_is_gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

void remove_tree(const fs::path& path, std::error_code& ec) {
  std::error_code ignored;
  if (fs::is_directory(fs::symlink_status(path, ignored))) {
    ::chmod(path.c_str(), 0700);
    for (auto it = fs::recursive_directory_iterator(path, fs::directory_options::skip_permission_denied, ignored);
         it != fs::recursive_directory_iterator(); it.increment(ignored)) {
      if (ignored) break;
      if (it->is_directory(ignored) && !it->is_symlink(ignored)) ::chmod(it->path().c_str(), 0700);
    }
  }
  fs::remove_all(path, ec);
}

std::vector<fs::path> remove_leftovers(const fs::path& dir, bool dry_run) {
  std::vector<fs::path> removed;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    auto owner = temporary_owner(entry.path().filename().string());
    if (!owner || !process_is_gone(*owner)) continue;
    removed.push_back(entry.path());
    if (dry_run) continue;
    std::error_code rec;
    remove_tree(entry.path(), rec);
    if (rec)
      spdlog::warn("cannot remove {}, left by a killed sprout: {}", entry.path().string(), rec.message());
    else
      spdlog::info("removed {}, left by a killed sprout (pid {})", entry.path().string(), *owner);
  }
  return removed;
}

}  // namespace sprout
