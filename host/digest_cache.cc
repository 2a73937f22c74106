#include "digest_cache.h"

#include <ctime>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "sha256.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

DigestCacheFile::DigestCacheFile(const fs::path& cache_dir, const fs::path& source_root) {
  auto abs = fs::absolute(source_root).lexically_normal().string();
  file_ = cache_dir / ".digest-cache" / (sha256_hex(abs).substr(0, 32) + ".json");
  std::ifstream in(file_);
  if (!in) return;
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("version", 0) != 1 || !j.contains("files") ||
      !j["files"].is_object()) {
    spdlog::debug("{}: ignoring unreadable digest cache", file_.string());
    return;
  }
  for (const auto& [rel, v] : j["files"].items())
    if (v.is_array() && v.size() == 2 && v[0].is_string() && v[1].is_string())
      loaded_[rel] = {v[0].get<std::string>(), v[1].get<std::string>()};
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
    json files = json::object();
    for (const auto& [rel, e] : current_) files[rel] = json::array({e.key, e.hash});
    fs::create_directories(file_.parent_path());
    write_file_atomic(file_, json{{"version", 1}, {"files", files}}.dump(), 0600);
  } catch (const std::exception& e) {
    spdlog::warn("cannot save the digest cache {}: {}", file_.string(), e.what());
  }
}

}  // namespace sprout
