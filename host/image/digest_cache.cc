#include "image/digest_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <iterator>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "base/sha256.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kHeader = "sprout-digest-cache v1\n";
constexpr std::size_t kHashLength = 64;
constexpr off_t kMaxFileBytes = off_t{1} << 30;  // far beyond any real tree's cache

/// What must not change for a cached hash to be trusted, as text ("size:mtime:ctime:ino:dev").
struct Identity {
  char buf[128];
  std::size_t size;
  explicit Identity(const struct stat& st) {
    auto r = fmt::format_to_n(buf, sizeof buf, "{}:{}.{}:{}.{}:{}:{}", st.st_size, st.st_mtim.tv_sec,
                              st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec, st.st_ino, st.st_dev);
    size = std::min(r.size, sizeof buf);
  }
  std::string_view view() const { return {buf, size}; }
};

}  // namespace

DigestCacheFile::DigestCacheFile(const fs::path& cache_dir, const fs::path& source_root) {
  auto abs = fs::absolute(source_root).lexically_normal().string();
  file_ = cache_dir / ".digest-cache" / (sha256_hex(abs).substr(0, 32) + ".txt");
  int fd = ::open(file_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 && st.st_size < kMaxFileBytes) {
    // Mapped with its pages populated at once: one system call, not one fault a page.
    void* m = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (m != MAP_FAILED) {
      map_ = m;
      map_size_ = static_cast<std::size_t>(st.st_size);
    }
  }
  ::close(fd);
  const std::string_view text(static_cast<const char*>(map_), map_size_);
  if (text.empty()) return;
  if (!text.starts_with(kHeader)) {
    spdlog::debug("{}: ignoring unreadable digest cache", file_.string());
    return;
  }
  // One entry a line: IDENTITY TAB HASH TAB RELATIVE-PATH. Malformed lines are skipped.
  std::string_view rest(text);
  rest.remove_prefix(kHeader.size());
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    auto t1 = line.find('\t');
    auto t2 = t1 == std::string_view::npos ? t1 : line.find('\t', t1 + 1);
    if (t2 == std::string_view::npos || t2 - t1 - 1 != kHashLength) continue;
    loaded_.push_back({line.substr(t2 + 1), line.substr(0, t1), line.substr(t1 + 1, kHashLength)});
  }
  auto by_rel = [](const Line& a, const Line& b) { return a.rel < b.rel; };
  if (!std::is_sorted(loaded_.begin(), loaded_.end(), by_rel))  // save() writes them sorted
    std::stable_sort(loaded_.begin(), loaded_.end(), by_rel);
  seen_.assign(loaded_.size(), false);
}

DigestCacheFile::~DigestCacheFile() {
  if (map_) ::munmap(map_, map_size_);
}

std::optional<std::string> DigestCacheFile::lookup(const std::string& rel, const struct stat& st) {
  auto it = std::lower_bound(loaded_.begin(), loaded_.end(), std::string_view(rel),
                             [](const Line& l, std::string_view r) { return l.rel < r; });
  if (it == loaded_.end() || it->rel != rel || it->identity != Identity(st).view()) return std::nullopt;
  std::lock_guard lock(mutex_);
  seen_[static_cast<std::size_t>(it - loaded_.begin())] = true;
  return std::string(it->hash);
}

void DigestCacheFile::store(const std::string& rel, const struct stat& st, const std::string& hash) {
  std::time_t now = std::time(nullptr);
  if (st.st_mtim.tv_sec >= now - 2 || st.st_ctim.tv_sec >= now - 2) return;  // racily clean: don't trust
  std::lock_guard lock(mutex_);
  stored_[rel] = {std::string(Identity(st).view()), hash};
}

void DigestCacheFile::save() {
  std::lock_guard lock(mutex_);
  if (stored_.empty() && std::find(seen_.begin(), seen_.end(), false) == seen_.end()) return;
  try {
    // What this walk saw, old and new, sorted by path; entries of vanished files are dropped.
    std::map<std::string_view, std::pair<std::string_view, std::string_view>> keep;
    for (std::size_t i = 0; i < loaded_.size(); ++i)
      if (seen_[i]) keep[loaded_[i].rel] = {loaded_[i].identity, loaded_[i].hash};
    for (const auto& [rel, e] : stored_) keep[rel] = {e.identity, e.hash};
    std::string text(kHeader);
    for (const auto& [rel, e] : keep) {
      if (rel.find_first_of("\t\n") != std::string_view::npos) continue;  // such names are simply rehashed
      fmt::format_to(std::back_inserter(text), "{}\t{}\t{}\n", e.first, e.second, rel);
    }
    fs::create_directories(file_.parent_path());
    write_file_atomic(file_, text, 0600, Durability::cache);  // a lost one only costs a rehash
  } catch (const std::exception& e) {
    spdlog::warn("cannot save the digest cache {}: {}", file_.string(), e.what());
  }
}

}  // namespace sprout
