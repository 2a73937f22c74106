#include "digest_cache.h"

#include <ctime>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "sha256.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {
constexpr std::string_view kHeader = "sprout-digest-cache v1\n";
}

DigestCacheFile::DigestCacheFile(const fs::path& cache_dir, const fs::path& source_root) {
  auto abs = fs::absolute(source_root).lexically_normal().string();
  file_ = cache_dir / ".digest-cache" / (sha256_hex(abs).substr(0, 32) + ".txt");
  std::ifstream in(file_, std::ios::binary);
  if (!in) return;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (text.rfind(kHeader, 0) != 0) {
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
    if (t2 == std::string_view::npos || t2 - t1 - 1 != 64) continue;
    loaded_.emplace(std::string(line.substr(t2 + 1)),
                    Entry{std::string(line.substr(0, t1)), std::string(line.substr(t1 + 1, 64))});
  }
}

std::string DigestCacheFile::identity(const struct stat& st) {
  return fmt::format("{}:{}.{}:{}.{}:{}:{}", st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec,
                     st.st_ctim.tv_nsec, st.st_ino, st.st_dev);
}

std::optional<std::string> DigestCacheFile::lookup(const std::string& rel, const struct stat& st) {
  std::lock_guard lock(mutex_);
  auto it = loaded_.find(rel);
  if (it == loaded_.end() || it->second.key != identity(st)) return std::nullopt;
  current_[rel] = it->second;
  return it->second.hash;
}

void DigestCacheFile::store(const std::string& rel, const struct stat& st, const std::string& hash) {
  std::time_t now = std::time(nullptr);
  if (st.st_mtim.tv_sec >= now - 2 || st.st_ctim.tv_sec >= now - 2) return;  // racily clean: don't trust
  std::lock_guard lock(mutex_);
  current_[rel] = {identity(st), hash};
  dirty_ = true;
}

void DigestCacheFile::save() {
  std::lock_guard lock(mutex_);
  if (!dirty_ && current_.size() == loaded_.size()) return;
  try {
    std::string text(kHeader);
    for (const auto& [rel, e] : current_) {
      if (rel.find_first_of("\t\n") != std::string::npos) continue;  // such names are simply rehashed
      text += e.key + "\t" + e.hash + "\t" + rel + "\n";
    }
    fs::create_directories(file_.parent_path());
    write_file_atomic(file_, text, 0600);
  } catch (const std::exception& e) {
    spdlog::warn("cannot save the digest cache {}: {}", file_.string(), e.what());
  }
}

}  // namespace sprout
