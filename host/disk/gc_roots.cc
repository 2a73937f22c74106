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

namespace {

/// Exclusive locks on the cache dirs: no export is between committing an image and
/// linking it meanwhile. Once per directory, however it is spelled (a second flock of
/// our own would wait).
std::vector<std::unique_ptr<CacheLock>> lock_caches(const std::vector<fs::path>& cache_dirs) {
  std::vector<std::unique_ptr<CacheLock>> locks;
  std::set<std::pair<dev_t, ino_t>> locked;
  for (const auto& dir : cache_dirs) {
    struct stat st;
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || !locked.emplace(st.st_dev, st.st_ino).second) continue;
    locks.push_back(std::make_unique<CacheLock>(dir, CacheLock::exclusive));
  }
  return locks;
}

/// Each directory once, however it is spelled (a trailing slash, a symlink, the same
/// one a spec and --cache-dir both name), first spelling kept: swept twice, its
/// images would be counted twice.
std::vector<fs::path> distinct_dirs(const std::vector<fs::path>& dirs) {
  std::vector<fs::path> out;
  std::set<std::pair<dev_t, ino_t>> seen_ids;
  std::set<fs::path> seen_names;
  for (const auto& dir : dirs) {
    struct stat st;
    bool fresh = ::stat(dir.c_str(), &st) == 0 ? seen_ids.emplace(st.st_dev, st.st_ino).second
                                              : seen_names.insert(dir.lexically_normal()).second;
    if (fresh) out.push_back(dir);
  }
  return out;
}

/// What the given specs use.
struct SpecUses {
  /// Images the specs' links use (the only sign of use an image linked before user
  /// records existed has), and the links themselves, to record them.
  std::set<fs::path> images;
  std::vector<std::pair<fs::path, fs::path>> links;  // (image, link)
  std::set<std::string> root_names;  ///< roots to keep: NAME, and NAME@FILE while STATE/FILE exists
};

SpecUses uses_of(const std::vector<Spec>& specs) {
  SpecUses uses;
  for (const auto& s : specs) {
    uses.root_names.insert(s.name);
    std::error_code oec;
    if (fs::exists(s.state().overlay_origin(), oec))
      uses.root_names.insert(s.name + "@" + s.state().overlay_origin().filename().string());
    for (const auto& overlay : s.state().overlays())
      if (StateDir::is_overlay_aside(overlay.filename().string()))
        uses.root_names.insert(s.name + "@" + overlay.filename().string());
    for (const auto& role : disk_roles()) {
      fs::path link = s.exported_image(role.name);
      std::error_code ec;
      if (fs::is_symlink(fs::symlink_status(link, ec))) {
        auto target = fs::read_symlink(link, ec);
        if (ec) continue;
        auto image = fs::weakly_canonical(target.is_absolute() ? target : link.parent_path() / target, ec);
        if (ec) continue;
        uses.images.insert(image);
        uses.links.emplace_back(image, fs::absolute(link).lexically_normal());
      }
    }
  }
  return uses;
}

/// A temporary of an export (a temporary image or a staging tree), by its name.
bool is_export_temporary(const std::string& name) {
  return name.rfind(".staging-", 0) == 0 ||
         (name.size() > 1 && name[0] == '.' && name.find(".tmp-") != std::string::npos);
}

/// One gc run, with a method per sweep (as ninja's Cleaner has one per kind of
/// cleaning): a cache dir's images and user records, its temporaries, a root dir.
class Collector {
 public:
  Collector(const SpecUses& uses, bool dry_run) : uses_(uses), dry_run_(dry_run) {}

  /// Removes the images of `dir` that nothing uses, and its export temporaries;
  /// drops the user records that no longer count and records the specs' links.
  void sweep_cache(const fs::path& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return;
    // Every VM that recorded its use of an image keeps it, whichever spec dir it is in.
    ImageUsers users = read_image_users(dir);
    std::set<std::string> kept;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      auto name = entry.path().filename().string();
      if (name == kImageUsersDir) continue;  // the records, never an image
      if (is_export_temporary(name))
        sweep_temporary(entry, name);
      else
        sweep_image(entry, name, users, kept);
    }
    report_.dropped_user_records.insert(report_.dropped_user_records.end(), users.stale.begin(), users.stale.end());
    if (dry_run_) return;
    drop_stale_users(dir, users.stale);
    record_spec_links(dir, kept);
  }

  /// Removes the roots in `dir` that no spec uses.
  void sweep_roots(const fs::path& dir) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      if (!entry.is_symlink()) continue;
      auto name = entry.path().filename().string();
      if (uses_.root_names.contains(name)) continue;
      report_.removed_roots.push_back(entry.path());
      remove(entry.path());
    }
  }

  GcReport report() && { return std::move(report_); }

 private:
  /// Leftovers of exports that were killed: temporary images and staging trees.
  void sweep_temporary(const fs::directory_entry& entry, const std::string& name) {
    // Its maker is gone: a leftover now. Without a pid in its name (older
    // versions), or a pid that was reused: once it is an hour old (a running
    // export's are younger).
    std::error_code tec;
    auto owner = temporary_owner(name);
    auto age = fs::file_time_type::clock::now() - fs::last_write_time(entry.path(), tec);
    if ((owner && process_is_gone(*owner)) || (!tec && age > std::chrono::hours(1))) {
      report_.removed_images.push_back(entry.path());
      if (!dry_run_) fs::remove_all(entry.path(), tec);
    }
  }

  /// Keeps one of sprout's images (`kept`: its name) when a user record or a spec
  /// uses it, removes it otherwise; leaves anything else alone.
  void sweep_image(const fs::directory_entry& entry, const std::string& name, const ImageUsers& users,
                   std::set<std::string>& kept) {
    bool ours = false;
    for (const auto& role : disk_roles()) ours = ours || (name.rfind(std::string(role.name) + "-", 0) == 0);
    if (!ours || entry.path().extension() != ".ext4") return;  // only sprout's images
    std::error_code cec;
    if (users.used.contains(name) || uses_.images.contains(fs::weakly_canonical(entry.path(), cec))) {
      report_.kept_images.push_back(entry.path());
      kept.insert(name);
    } else {
      report_.removed_images.push_back(entry.path());
      remove(entry.path());
    }
  }

  /// Links made before user records existed: recorded now, so a gc of another spec
  /// dir keeps their images too.
  void record_spec_links(const fs::path& dir, const std::set<std::string>& kept) {
    std::error_code dec;
    auto canonical_dir = fs::weakly_canonical(dir, dec);
    for (const auto& [image, link] : uses_.links) {
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

  void remove(const fs::path& p) {
    if (dry_run_) return;
    std::error_code ec;
    fs::remove(p, ec);
    if (ec) spdlog::warn("cannot remove {}: {}", p.string(), ec.message());
  }

  const SpecUses& uses_;
  const bool dry_run_;
  GcReport report_;
};

}  // namespace

GcReport collect_garbage(const std::vector<Spec>& specs, const std::vector<fs::path>& cache_dirs,
                         const std::vector<fs::path>& root_dirs, bool dry_run) {
  const auto locks = lock_caches(cache_dirs);
  const SpecUses uses = uses_of(specs);
  Collector gc(uses, dry_run);
  for (const auto& dir : distinct_dirs(cache_dirs)) gc.sweep_cache(dir);
  for (const auto& dir : distinct_dirs(root_dirs)) gc.sweep_roots(dir);
  return std::move(gc).report();
}

}  // namespace sprout
