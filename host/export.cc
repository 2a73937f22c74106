#include "export.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <future>
#include <memory>
#include <chrono>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "cache_lock.h"
#include "closure_image.h"
#include "digest_cache.h"
#include "directory.h"
#include "error.h"
#include "ext4_image.h"
#include "image_users.h"
#include "leftovers.h"
#include "scratch_dir.h"
#include "sha256.h"
#include "tree_copy.h"
#include "tree_digest.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

/// Bumped whenever the image layout changes, so old cache entries are not reused.
constexpr const char* kImageFormat = "sprout-ext4-v3";

/// Directories the guest mounts other disks on, relative to a role's mount point:
/// the self disk is mounted at /etc/nixos/hosts/self, inside the read-only config disk,
/// so the config image must have that directory even when the tree lacks it.
std::vector<std::string> mount_points_inside(DiskRole role) {
  if (role == DiskRole::config) return {"hosts/self"};
  return {};
}

/// Hashes a copy made by copy_listing supplied to content_digest: the digest is of
/// exactly the bytes that were copied.
class CopiedHashes : public ContentHashCache {
 public:
  explicit CopiedHashes(const CopiedTree& t) : t_(t) {}
  std::optional<std::string> lookup(const std::string& rel, const struct stat&) override {
    auto it = t_.content_hashes.find(rel);
    if (it == t_.content_hashes.end()) throw std::logic_error("copied tree lacks " + rel);
    return it->second;
  }
  void store(const std::string&, const struct stat&, const std::string&) override {}

 private:
  const CopiedTree& t_;
};

/// True when two listings of one tree agree on everything an image is made of.
bool same_listing(const TreeListing& a, const TreeListing& b, std::string* first_difference) {
  auto same_time = [](const struct timespec& x, const struct timespec& y) {
    return x.tv_sec == y.tv_sec && x.tv_nsec == y.tv_nsec;
  };
  std::size_t n = std::min(a.entries.size(), b.entries.size());
  for (std::size_t i = 0; i < n; ++i) {
    const auto &x = a.entries[i], &y = b.entries[i];
    if (x.rel != y.rel || x.st.st_mode != y.st.st_mode || x.st.st_ino != y.st.st_ino || x.st.st_dev != y.st.st_dev ||
        x.st.st_size != y.st.st_size || x.st.st_nlink != y.st.st_nlink || !same_time(x.st.st_mtim, y.st.st_mtim) ||
        !same_time(x.st.st_ctim, y.st.st_ctim) || x.link_target != y.link_target) {
      *first_difference = x.rel == y.rel ? x.abs : std::min(x.abs, y.abs);
      return false;
    }
  }
  if (a.entries.size() != b.entries.size()) {
    *first_difference = (a.entries.size() > n ? a.entries[n] : b.entries[n]).abs;
    return false;
  }
  return true;
}

/// Points `link` at the cached `image` atomically, its use recorded first
/// (image_users.h), so gc keeps the image while the link points at it.
void link_image(const fs::path& image, const fs::path& link) {
  std::error_code sec;
  auto st = fs::symlink_status(link, sec);
  if (fs::exists(st) && !fs::is_symlink(st))
    throw InputError(fmt::format("{}: exists and is not a link sprout made; move it away (sprout never replaces "
                                 "a file it did not create)",
                                 link.string()));
  record_image_user(image, link);
  symlink_atomic(image, link);
}

struct RoleInput {
  DiskRole role;
  fs::path source;      ///< the user's directory
  TreeListing listing;  ///< the accepted entries of the tree
  std::string digest;   ///< of the accepted tree (contents included)
  TreeSize size;        ///< what the accepted tree needs on disk
  /// Small trees (self, ssh) are copied, exactly as listed, into a private staging
  /// directory, and the image is built from that copy; the digest is of its bytes.
  /// The config tree is built from where it is, and listed again after the build.
  std::unique_ptr<ScratchDir> staging;
  fs::path staged_tree() const { return staging->path / "tree"; }
};

/// The image's UUID and hash seed: from the tree's structure (not its contents), so
/// mkfs can start before the contents are hashed; the same tree still always gives
/// the same bytes.
std::string image_seed(const RoleInput& in, const std::string& extra_file_text) {
  const auto& info = role_info(in.role);
  return sha256_hex(fmt::format("{}\nseed\n{}\n{}\n{}\n{}\n", kImageFormat, info.name, info.label,
                                structure_digest(in.listing),
                                extra_file_text.empty() ? "" : sha256_hex(extra_file_text)));
}

/// An image being built by mkfs.ext4 on another thread while the tree's contents are
/// hashed. Abandoned (mkfs stopped, temporary file removed) unless taken.
class Speculation {
 public:
  Speculation(const RoleInput& in, const fs::path& cache_dir)
      : pending_(cache_dir / fmt::format(".speculative-{}.ext4", role_info(in.role).name)) {
    if (::pipe2(cancel_, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe");
    future_ = std::async(std::launch::async, [this, source = in.source, role = in.role, label = std::string(role_info(in.role).label),
                                              seed = image_seed(in, ""), size = in.size] {
      build_ext4_image(source, label, seed, pending_.temp_path(), size, cancel_[0], mount_points_inside(role));
    });
  }
  ~Speculation() {
    if (future_.valid()) {
      [[maybe_unused]] auto n = ::write(cancel_[1], "x", 1);
      try {
        future_.get();
      } catch (...) {
      }
    }
    ::close(cancel_[0]);
    ::close(cancel_[1]);
  }
  /// Waits for the build (rethrowing its failure) and returns the finished file.
  PendingFile& take() {
    future_.get();
    return pending_;
  }

 private:
  PendingFile pending_;
  int cancel_[2] = {-1, -1};
  std::future<void> future_;
};

ExportedImage build_role(const RoleInput& in, const ExportRequest& req, const std::string& extra_file_name,
                         const std::string& extra_file_text, std::unique_ptr<Speculation> speculation) {
  const auto& info = role_info(in.role);
  std::string key = sha256_hex(fmt::format("{}\n{}\n{}\n{}\n{}\n", kImageFormat, info.name, info.label, in.digest,
                                           extra_file_text.empty() ? "" : sha256_hex(extra_file_text)));
  ExportedImage img;
  img.role = in.role;
  img.tree_digest = in.digest;
  img.image = req.cache_dir / fmt::format("{}-{}.ext4", info.name, key.substr(0, 32));
  img.link = req.out_dir / fmt::format("{}.img", info.name);

  std::error_code ec;
  if (fs::is_regular_file(img.image, ec) && fs::file_size(img.image, ec) > 0) {
    img.cache_hit = true;
    speculation.reset();  // an identical image exists: stop building another
  } else {
    auto finish = [&](PendingFile& pending) {
      if (!in.staging) {
        // mkfs.ext4 read the live tree: it must still be what was listed and hashed,
        // or the image could hold what the key does not say. Never cache that.
        std::string what;
        if (!same_listing(in.listing, list_tree(in.source), &what))
          throw InputError(fmt::format("{}: changed while its image was built; nothing was cached, run the export "
                                       "again",
                                       what));
      }
      // Readable by its owner alone: a VM's config is nobody else's business.
      fs::permissions(pending.temp_path(), fs::perms::owner_read);
      pending.commit_as(img.image);
      spdlog::info("built {} image {} ({} MiB)", info.name, img.image.string(), fs::file_size(img.image) >> 20);
    };
    if (speculation) {
      finish(speculation->take());
    } else {
      PendingFile pending(img.image);
      std::string seed = image_seed(in, extra_file_text);
      if (in.staging) {
        if (!extra_file_name.empty()) {
          if (fs::exists(fs::symlink_status(in.staged_tree() / extra_file_name)))
            throw InputError(fmt::format("{}: contains {}, a name sprout reserves for its manifest; rename it",
                                         in.source.string(), extra_file_name));
          write_file_atomic(in.staged_tree() / extra_file_name, extra_file_text, 0444);
        }
        apply_directory_modes(in.listing, in.staged_tree());
        build_ext4_image(in.staged_tree(), std::string(info.label), seed, pending.temp_path(), std::nullopt, -1,
                         mount_points_inside(in.role));
      } else {
        build_ext4_image(in.source, std::string(info.label), seed, pending.temp_path(), in.size, -1,
                         mount_points_inside(in.role));
      }
      finish(pending);
    }
  }
  img.bytes = fs::file_size(img.image);
  link_image(img.image, img.link);
  return img;
}

/// The cache or state directory, made if missing; a failure names it and says why.
void make_directory(const fs::path& dir, const char* what) {
  std::error_code ec;
  ensure_directory(dir.string(), ec);
  if (ec) throw std::system_error(ec, fmt::format("cannot create the {} {}", what, dir.string()));
}

}  // namespace

ExportRequest ExportRequest::from_spec(const Spec& spec) {
  ExportRequest r;
  r.name = spec.name;
  r.config_source = spec.config_source;
  r.self_source = spec.self_source;
  r.ssh_source = spec.ssh_source;
  r.allow_private_keys = spec.allow_private_keys;
  r.rebuild = spec.rebuild;
  if (spec.host_built()) {
    r.system = spec.system;
    r.base_system = spec.base_system;
  }
  r.cache_dir = spec.cache_dir;
  r.out_dir = spec.state_dir;
  return r;
}

json ExportResult::to_json() const {
  json images_json = json::array();
  for (const auto& i : images)
    images_json.push_back({{"role", role_info(i.role).name},
                           {"path", i.link.string()},
                           {"image", i.image.string()},
                           {"treeDigest", i.tree_digest},
                           {"cacheHit", i.cache_hit},
                           {"bytes", i.bytes}});
  json excl = json::array();
  for (const auto& e : excluded) excl.push_back({{"path", e.path}, {"reason", e.reason}});
  json out{{"name", manifest.name}, {"generation", manifest.generation}, {"images", images_json}, {"excluded", excl}};
  out["specialize"] = manifest.host_built() ? "host" : "guest";
  if (manifest.host_built()) out["system"] = manifest.system;
  return out;
}

ExportResult export_disks(const ExportRequest& request) {
  ExportRequest req = request;
  req.cache_dir = fs::absolute(req.cache_dir).lexically_normal();
  req.out_dir = fs::absolute(req.out_dir).lexically_normal();
  ExportResult result;
  SshFilter ssh_filter(req.allow_private_keys);

  make_directory(req.cache_dir, "cache directory");
  // Others may pass through to an image a hypervisor's user was given (libvirt's
  // dynamic ownership), but not list the cache; images are 0400.
  struct stat cst;
  if (::stat(req.cache_dir.c_str(), &cst) == 0 && cst.st_uid == ::geteuid() && (cst.st_mode & 07777) != 0711)
    ::chmod(req.cache_dir.c_str(), 0711);
  // Shared: exports run side by side; gc waits until images are built and linked.
  CacheLock cache_lock(req.cache_dir, CacheLock::shared);
  remove_leftovers(req.cache_dir);
  remove_leftovers(req.out_dir);
  std::vector<RoleInput> inputs(req.ssh_source ? 3 : 2);
  inputs[0].role = DiskRole::config;
  inputs[0].source = req.config_source;
  inputs[1].role = DiskRole::self;
  inputs[1].source = req.self_source;
  if (req.ssh_source) {
    inputs[2].role = DiskRole::ssh;
    inputs[2].source = *req.ssh_source;
  }

  std::unique_ptr<Speculation> config_build;
  for (auto& in : inputs) {
    auto t0 = std::chrono::steady_clock::now();
    if (in.role != DiskRole::config) {
      // What is copied is what was accepted: the listing, not a second walk.
      if (in.role == DiskRole::ssh)
        in.listing = list_tree(in.source, std::ref(ssh_filter));
      else
        in.listing = list_tree(in.source);
      in.staging = std::make_unique<ScratchDir>(req.cache_dir);
      fs::create_directory(in.staged_tree());
      CopiedTree copied = copy_listing(in.listing, in.staged_tree());
      CopiedHashes hashes(copied);
      in.digest = content_digest(in.listing, &hashes);
    } else {
      DigestCacheFile cache(req.cache_dir, in.source);
      in.listing = list_tree(in.source, {}, cache.known_files() + cache.known_files() / 8);
      for (const auto& e : in.listing.entries) account_entry(in.size, e);
      // The shared config tree is the big one: when its contents must be read, build
      // its image at the same time (the result is dropped if the cache has it).
      in.digest = content_digest(in.listing, &cache, [&](std::size_t unknown_files) {
        if (in.role == DiskRole::config && unknown_files > 0)
          config_build = std::make_unique<Speculation>(in, req.cache_dir);
      });
      cache.save();
    }
    spdlog::debug("{}: digest in {:.0f} ms", in.source.string(),
                  std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  result.excluded = ssh_filter.excluded();
  for (const auto& x : result.excluded)
    spdlog::warn("ssh export: left out {}/{}: {}{}", req.ssh_source->string(), x.path, x.reason,
                 x.reason.rfind("private key", 0) == 0 ? " (pass --allow-private-keys to export it)" : "");

  Manifest& m = result.manifest;
  m.name = req.name;
  m.config_digest = inputs[0].digest;
  m.self_digest = inputs[1].digest;
  m.ssh_digest = inputs.size() > 2 ? inputs[2].digest : "";
  m.rebuild = req.rebuild;
  std::optional<ClosureImage> closure;
  if (!req.system.empty()) {
    closure = build_closure_image(ClosureRequest{req.system, req.base_system, req.cache_dir});
    m.system = req.system;
    m.closure_digest = closure->key;
  }
  m.generation =
      generation_id(m.config_digest, m.self_digest, m.ssh_digest, m.rebuild.to_json().dump(), m.closure_digest);

  make_directory(req.out_dir, "state directory");
  // The roles' images are built side by side: the self and ssh images on their own
  // threads while this one finishes the config image (whose mkfs.ext4 may have run
  // since its contents were hashed). Each is committed and linked on its own.
  const std::string manifest_text = m.to_json_text();
  std::vector<std::future<ExportedImage>> others;
  for (std::size_t i = 1; i < inputs.size(); ++i)
    others.push_back(std::async(std::launch::async, [&, i] {
      const auto& in = inputs[i];
      return in.role == DiskRole::self ? build_role(in, req, kManifestFileName, manifest_text, nullptr)
                                       : build_role(in, req, "", "", nullptr);
    }));
  result.images.push_back(build_role(inputs[0], req, "", "", std::move(config_build)));
  for (auto& f : others) result.images.push_back(f.get());
  if (closure) {
    ExportedImage img;
    img.role = DiskRole::closure;
    img.link = req.out_dir / "closure.img";
    img.image = closure->image;
    img.tree_digest = closure->key;
    img.cache_hit = closure->cache_hit;
    img.bytes = fs::file_size(img.image);
    link_image(img.image, img.link);
    result.images.push_back(img);
  }
  // Links from an earlier export that had an ssh disk or was host-built.
  for (auto [gone, name] : {std::pair{!req.ssh_source, "ssh.img"}, std::pair{!closure, "closure.img"}}) {
    std::error_code ec;
    if (gone && fs::is_symlink(fs::symlink_status(req.out_dir / name, ec))) fs::remove(req.out_dir / name, ec);
  }
  return result;
}

}  // namespace sprout
