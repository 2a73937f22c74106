#include "disk/gc_roots.h"

#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <set>
#include <system_error>

#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "image/cache_lock.h"
#include "disk_role.h"
#include "image/image_users.h"
#include "base/leftovers.h"

namespace sprout {

namespace fs = std::filesystem;

fs::path nix_store_dir() {
  const char* env = std::getenv("NIX_STORE_DIR");
  return env && *env ? fs::path(env) : fs::path("/nix/store");
}

std::optional<fs::path> register_gc_root(const fs::path& gc_root_dir, const std::string& vm, const fs::path& base) {
  fs::path store = nix_store_dir();
  auto rel = base.lexically_relative(store);
  if (rel.empty() || *rel.begin() == "..") return std::nullopt;
  std::error_code ec;
  fs::create_directories(gc_root_dir, ec);
  if (ec) throw std::system_error(ec, "cannot create the GC root directory " + gc_root_dir.string());
  fs::path root = gc_root_dir / vm;
  if (fs::is_symlink(fs::symlink_status(root)) && fs::read_symlink(root, ec) == base) return root;
  symlink_atomic(base, root);
  spdlog::info("registered GC root {} -> {}", root.string(), base.string());
  return root;
}

GcReport collect_garbage(const std::vector<Spec>& specs, const std::vector<fs::path>& cache_dirs,
                         const std::vector<fs::path>& root_dirs, bool dry_run) {
  GcReport report;
  // Exclusive: no export is between committing an image and linking it meanwhile.
  // Once per directory, however it is spelled (a second flock of our own would wait).
  std::vector<std::unique_ptr<CacheLock>> locks;
  std::set<std::pair<dev_t, ino_t>> locked;
  for (const auto& dir : cache_dirs) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || !locked.emplace(st.st_dev, st.st_ino).second) continue;
    locks.push_back(std::make_unique<CacheLock>(dir, CacheLock::exclusive));
  }
  // Images the given specs' links use (the only sign of use an image linked before
  // user records existed has), and the links themselves, to record them.
  std::set<fs::path> used_images;
  std::vector<std::pair<fs::path, fs::path>> spec_links;  // (image, link)
  std::set<std::string> names;  // roots to keep: NAME, and NAME@FILE while STATE/FILE exists
  for (const auto& s : specs) {
    names.insert(s.name);
    for (const auto& overlay : s.state().overlays())
      if (StateDir::is_overlay_aside(overlay.filename().string()))
        names.insert(s.name + "@" + overlay.filename().string());
    for (const auto& role : disk_roles()) {
      fs::path link = s.exported_image(role.name);
      std::error_code ec;
      if (fs::is_symlink(fs::symlink_status(link, ec))) {
        auto target = fs::read_symlink(link, ec);
        if (ec) continue;
        auto image = fs::weakly_canonical(target.is_absolute() ? target : link.parent_path() / target, ec);
        if (ec) continue;
        used_images.insert(image);
        spec_links.emplace_back(image, fs::absolute(link).lexically_normal());
      }
    }
  }
  auto remove = [&](const fs::path& p) {
    if (dry_run) return;
    std::error_code ec;
    fs::remove(p, ec);
    if (ec) spdlog::warn("cannot remove {}: {}", p.string(), ec.message());
  };
  for (const auto& dir : cache_dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    // Every VM that recorded its use of an image keeps it, whichever spec dir it is in.
    ImageUsers users = read_image_users(dir);
    std::set<std::string> kept;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      auto name = entry.path().filename().string();
      if (name == kImageUsersDir) continue;  // the records, never an image
      // Leftovers of exports that were killed: temporary images and staging trees,
      // once they are an hour old (a running export's are younger).
      bool temporary = name.rfind(".staging-", 0) == 0 ||
                       (name.size() > 1 && name[0] == '.' && name.find(".tmp-") != std::string::npos);
      if (temporary) {
        // Its maker is gone: a leftover now. Without a pid in its name (older
        // versions), or a pid that was reused: once it is an hour old.
        std::error_code tec;
        auto owner = temporary_owner(name);
        auto age = fs::file_time_type::clock::now() - fs::last_write_time(entry.path(), tec);
        if ((owner && process_is_gone(*owner)) || (!tec && age > std::chrono::hours(1))) {
          report.removed_images.push_back(entry.path());
          if (!dry_run) fs::remove_all(entry.path(), tec);
        }
        continue;
      }
      bool ours = false;
      for (const auto& role : disk_roles()) ours = ours || (name.rfind(std::string(role.name) + "-", 0) == 0);
      if (!ours || entry.path().extension() != ".ext4") continue;  // only sprout's images
      std::error_code cec;
      if (users.used.contains(name) || used_images.contains(fs::weakly_canonical(entry.path(), cec))) {
        report.kept_images.push_back(entry.path());
        kept.insert(name);
      } else {
        report.removed_images.push_back(entry.path());
        remove(entry.path());
      }
    }
    report.dropped_user_records.insert(report.dropped_user_records.end(), users.stale.begin(), users.stale.end());
    if (dry_run) continue;
    drop_stale_users(dir, users.stale);
    // Links made before user records existed: record them now, so a gc of another
    // spec dir keeps their images too.
    std::error_code dec;
    auto canonical_dir = fs::weakly_canonical(dir, dec);
    for (const auto& [image, link] : spec_links) {
      if (dec || image.parent_path() != canonical_dir || !kept.contains(image.filename().string()) ||
          !link_uses_image(link, image))
        continue;
      try {
        record_image_user(image, link);
      } catch (const std::system_error& e) {
        spdlog::warn("cannot record {} as a user of {}: {}", link.string(), image.string(), e.what());
      }
    }
  }
  for (const auto& dir : root_dirs) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (!entry.is_symlink()) continue;
      auto name = entry.path().filename().string();
      if (names.contains(name)) continue;
      report.removed_roots.push_back(entry.path());
      remove(entry.path());
    }
  }
  return report;
}

}  // namespace sprout
