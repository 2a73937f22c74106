#include "image/export.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "image/cache_lock.h"
#include "image/closure_image.h"
#include "image/digest_cache.h"
#include "directory.h"
#include "error.h"
#include "image/ext4_writer.h"
#include "image/secrets_image.h"
#include "identity/secrets_source.h"
#include "identity/vm_identity.h"
#include "image/image_users.h"
#include "base/leftovers.h"
#include "image/listed_tree.h"
#include "base/sha256.h"
#include "image/test_hook.h"
#include "image/tree_digest.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

/// Bumped whenever the image layout changes, so old cache entries are not reused.
constexpr const char* kImageFormat = "sprout-ext4-v4";

/// Directories the guest mounts other disks on, relative to a role's mount point:
/// the self disk is mounted at /etc/nixos/hosts/self, inside the read-only config disk,
/// so the config image must have that directory even when the tree lacks it.
std::vector<std::string> mount_points_inside(DiskRole role) {
  if (role == DiskRole::config) return {"hosts/self"};
  return {};
}

/// STATE/ROLE.img, the link to a role's cached image.
fs::path link_of(const ExportRequest& req, DiskRole role) {
  return req.out_dir / fmt::format("{}.img", role_info(role).name);
}

/// InputError unless `link` is absent or a symlink (one sprout made, to replace).
void require_replaceable_link(const fs::path& link) {
  std::error_code sec;
  auto st = fs::symlink_status(link, sec);
  if (fs::exists(st) && !fs::is_symlink(st))
    throw InputError(fmt::format("{}: exists and is not a link sprout made; move it away (sprout never replaces "
                                 "a file it did not create)",
                                 link.string()));
}

/// std::system_error naming `dir` unless a link can be made in it (a read-only mount,
/// an immutable directory or sysfs takes none), found by making one and removing it.
void require_links_possible(const fs::path& dir) {
  fs::path probe = dir / fmt::format(".links.tmp-{}", ::getpid());  // a leftover if killed (leftovers.h)
  ::unlink(probe.c_str());  // ours by its name, should an earlier process of our pid have left it
  if (::symlink("probe", probe.c_str()) != 0)
    throw std::system_error(errno, std::generic_category(),
                            fmt::format("{}: cannot make the disk links in this state directory; check its "
                                        "permissions, mount and attributes (lsattr -d)",
                                        dir.string()));
  ::unlink(probe.c_str());
}

/// Points `link` at the cached `image` atomically, its use recorded first
/// (image_users.h), so gc keeps the image while the link points at it; a link that
/// cannot be made leaves no record.
void link_image(const fs::path& image, const fs::path& link) {
  require_replaceable_link(link);
  PendingImageUser user(image, link);
  std::error_code sec;
  if (!(fs::is_symlink(fs::symlink_status(link, sec)) && fs::read_symlink(link, sec) == image))
    symlink_atomic(image, link);
  user.keep();
}

struct RoleInput {
  DiskRole role;
  fs::path source;      ///< the user's directory
  TreeListing listing;  ///< the accepted entries of the tree
  TreeSize size;        ///< what the accepted tree needs on disk
  /// Content hashes of files seen unchanged before (none for the ssh role: no
  /// record of its keys is kept, and it is small).
  std::unique_ptr<DigestCacheFile> hashes;
  /// The tree's digest when known without building: from the hashes above when they
  /// cover every file, else (ssh) from reading it. An image is always built from
  /// one reading of the tree, and its key is that reading's digest.
  std::optional<std::string> digest;
};

/// The image's UUID and hash seed: from the tree's structure (not its contents, nor
/// the manifest), so the filesystem can be laid out before the contents are read;
/// the same tree still always gives the same bytes.
std::string image_seed(const RoleInput& in) {
  const auto& info = role_info(in.role);
  return sha256_hex(
      fmt::format("{}\nseed\n{}\n{}\n{}\n", kImageFormat, info.name, info.label, structure_digest(in.listing)));
}

/// The cached image for a role's digest (and, for the self image, its manifest).
ExportedImage place(const RoleInput& in, const std::string& digest, const std::string& manifest_text,
                    const ExportRequest& req) {
  const auto& info = role_info(in.role);
  std::string key = sha256_hex(fmt::format("{}\n{}\n{}\n{}\n{}\n", kImageFormat, info.name, info.label, digest,
                                           manifest_text.empty() ? "" : sha256_hex(manifest_text)));
  ExportedImage img;
  img.role = in.role;
  img.tree_digest = digest;
  img.image = req.cache_dir / fmt::format("{}-{}.ext4", info.name, key.substr(0, 32));
  img.link = link_of(req, in.role);
  std::error_code ec;
  img.cache_hit = fs::is_regular_file(img.image, ec) && fs::file_size(img.image, ec) > 0;
  return img;
}

/// An image of one role written from one reading of its tree, not yet committed.
struct Build {
  std::unique_ptr<PendingFile> pending;
  std::unique_ptr<Ext4Writer> writer;
  std::string digest;  ///< of exactly what was read into the image
};

Build build_contents(RoleInput& in, const ExportRequest& req) {
  const auto& info = role_info(in.role);
  auto t0 = std::chrono::steady_clock::now();
  Build b;
  b.pending = std::make_unique<PendingFile>(req.cache_dir / fmt::format("build-{}.ext4", info.name));
  run_test_hook({"build", std::string(info.name)});
  TreeSize size = in.size;
  if (in.role == DiskRole::self) {
    size.files += 1;  // the manifest
    size.data_bytes += 64 << 10;
  }
  b.writer = std::make_unique<Ext4Writer>(b.pending->temp_path(), std::string(info.label), image_seed(in), size);
  auto hashes = b.writer->add_listing(in.listing);
  std::vector<std::string> by_entry(in.listing.entries.size());
  for (std::size_t i = 0; i < in.listing.entries.size(); ++i) {
    const auto& e = in.listing.entries[i];
    if (!S_ISREG(e.st.st_mode)) continue;
    by_entry[i] = hashes.at(e.rel);
    if (in.hashes) in.hashes->store(e.rel, e.st, by_entry[i]);
  }
  b.digest = digest_of(in.listing, by_entry);
  b.writer->ensure_directories(mount_points_inside(in.role));
  spdlog::debug("{}: {} image written in {:.0f} ms", in.source.string(), info.name,
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  return b;
}

/// Finishes a build (the manifest added to the self image), and commits it as `img`.
void commit_build(Build& b, const RoleInput& in, const ExportedImage& img, const std::string& manifest_text) {
  if (!manifest_text.empty()) b.writer->add_file(kManifestFileName, manifest_text, 0444);
  b.writer->finish();
  run_test_hook({"built", std::string(role_info(in.role).name), b.pending->temp_path().string()});
  // Readable by its owner alone: a VM's config is nobody else's business.
  fs::permissions(b.pending->temp_path(), fs::perms::owner_read);
  b.pending->commit_as(img.image);
  spdlog::info("built {} image {} ({} MiB)", role_info(in.role).name, img.image.string(),
               fs::file_size(img.image) >> 20);
}

/// For a role whose key does not depend on a manifest (config, ssh): nothing when
/// its known digest has a cached image, else a build (which makes the digest known).
std::optional<Build> prepare_role(RoleInput& in, const ExportRequest& req) {
  if (in.digest && place(in, *in.digest, "", req).cache_hit) return std::nullopt;
  Build b = build_contents(in, req);
  in.digest = b.digest;
  return b;
}

/// The role's image, committed from `build` unless one of the same key is cached
/// (`manifest_text`: the self image's), and linked.
ExportedImage finish_role(const RoleInput& in, std::optional<Build>& build, const std::string& manifest_text,
                          const ExportRequest& req) {
  ExportedImage img = place(in, *in.digest, manifest_text, req);
  if (!img.cache_hit) {
    if (!build) throw std::logic_error(fmt::format("no {} image was built", role_info(in.role).name));
    commit_build(*build, in, img, manifest_text);
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

/// The request with its cache and state directories absolute and normal, as links
/// and cache keys spell them.
ExportRequest with_absolute_dirs(const ExportRequest& request) {
  ExportRequest req = request;
  req.cache_dir = fs::absolute(req.cache_dir).lexically_normal();
  req.out_dir = fs::absolute(req.out_dir).lexically_normal();
  return req;
}

/// Opens the export's cache session: the cache directory made (0711) and locked
/// (shared), and the leftovers of killed exports removed from it and from the state
/// directory. The session lasts as long as the returned lock.
std::unique_ptr<CacheLock> open_cache(const ExportRequest& req) {
  make_directory(req.cache_dir, "cache directory");
  // Others may pass through to an image a hypervisor's user was given (libvirt's
  // dynamic ownership), but not list the cache; images are 0400.
  struct stat cst;
  if (::stat(req.cache_dir.c_str(), &cst) == 0 && cst.st_uid == ::geteuid() && (cst.st_mode & 07777) != 0711)
    ::chmod(req.cache_dir.c_str(), 0711);
  // Shared: exports run side by side; gc waits until images are built and linked.
  auto lock = std::make_unique<CacheLock>(req.cache_dir, CacheLock::shared);
  remove_leftovers(req.cache_dir);
  remove_leftovers(req.out_dir);
  return lock;
}

/// Lists one role's tree, and finds its digest when that is known without building.
void list_role(RoleInput& in, const ExportRequest& req, SshFilter& ssh_filter) {
  auto t0 = std::chrono::steady_clock::now();
  if (in.role == DiskRole::ssh) {
    in.listing = list_tree(in.source, std::ref(ssh_filter));
    in.digest = ListedTreeReader(in.listing).content_digest();
  } else {
    in.hashes = std::make_unique<DigestCacheFile>(req.cache_dir, in.source);
    in.listing = list_tree(in.source, {}, in.hashes->known_files() + in.hashes->known_files() / 8);
    in.digest = known_content_digest(in.listing, *in.hashes);
  }
  for (const auto& e : in.listing.entries) account_entry(in.size, e);
  if (in.role == DiskRole::self)
    for (const auto& e : in.listing.entries)
      if (e.rel == kManifestFileName)
        throw InputError(fmt::format("{}: contains {}, a name sprout reserves for its manifest; rename it",
                                     in.source.string(), kManifestFileName));
  spdlog::debug("{}: listed in {:.0f} ms, digest {}", in.source.string(),
                std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
                in.digest ? "known" : "to be read");
}

/// The request's roles, listed: config, self and (when asked for) ssh, in that order.
std::vector<RoleInput> list_roles(const ExportRequest& req, SshFilter& ssh_filter) {
  std::vector<RoleInput> inputs(req.ssh_source ? 3 : 2);
  inputs[0].role = DiskRole::config;
  inputs[0].source = req.config_source;
  inputs[1].role = DiskRole::self;
  inputs[1].source = req.self_source;
  if (req.ssh_source) {
    inputs[2].role = DiskRole::ssh;
    inputs[2].source = *req.ssh_source;
  }
  for (auto& in : inputs) list_role(in, req, ssh_filter);
  return inputs;
}

/// The ssh files left out, each warned about.
std::vector<Exclusion> report_excluded(const ExportRequest& req, const SshFilter& ssh_filter) {
  std::vector<Exclusion> excluded = ssh_filter.excluded();
  for (const auto& x : excluded)
    spdlog::warn("ssh export: left out {}/{}: {}{}", req.ssh_source->string(), x.path, x.reason,
                 x.reason.rfind("private key", 0) == 0 ? " (pass --allow-private-keys to export it)" : "");
  return excluded;
}

/// Makes the state directory and checks that every link can be made there. What
/// linking could refuse is found before anything is built or recorded, so a failed
/// export leaves the cache and the state directory as they were.
void check_links_possible(const ExportRequest& req, const std::vector<RoleInput>& inputs) {
  make_directory(req.out_dir, "state directory");
  for (const auto& in : inputs) require_replaceable_link(link_of(req, in.role));
  if (!req.system.empty()) require_replaceable_link(link_of(req, DiskRole::closure));
  require_links_possible(req.out_dir);
}

/// The roles' builds (none for a role whose image is cached, or not yet known to be).
struct RoleBuilds {
  std::optional<Build> config, self, ssh;
};

/// Builds the images the cache lacks, side by side, each role on a thread of its
/// own (config on this one); afterwards every role's digest is known. The self image
/// is built whenever its digest is unknown: its key also covers the manifest, so
/// whether it is cached is known only later (build_self_if_uncached).
RoleBuilds build_missing(std::vector<RoleInput>& inputs, const ExportRequest& req) {
  RoleInput& self = inputs[1];
  RoleInput* ssh = inputs.size() > 2 ? &inputs[2] : nullptr;
  std::future<std::optional<Build>> self_build, ssh_build;
  if (!self.digest)
    self_build = std::async(std::launch::async, [&] { return std::optional<Build>(build_contents(self, req)); });
  if (ssh) ssh_build = std::async(std::launch::async, [&] { return prepare_role(*ssh, req); });
  RoleBuilds builds;
  builds.config = prepare_role(inputs[0], req);
  if (ssh_build.valid()) builds.ssh = ssh_build.get();
  if (self_build.valid()) {
    builds.self = self_build.get();
    self.digest = builds.self->digest;
  }
  return builds;
}

/// The host-built system's closure image, from the cache or built (none when the
/// guest builds its system).
std::optional<ClosureImage> closure_for(const ExportRequest& req) {
  if (req.system.empty()) return std::nullopt;
  return build_closure_image(ClosureRequest{req.system, req.base_system, req.cache_dir});
}

/// The manifest of this export: every role's digest, and the closure's.
Manifest manifest_for(const ExportRequest& req, const std::vector<RoleInput>& inputs,
                      const std::optional<ClosureImage>& closure, const std::string& secrets_digest) {
  Manifest m;
  m.name = req.name;
  m.config_digest = *inputs[0].digest;
  m.self_digest = *inputs[1].digest;
  m.ssh_digest = inputs.size() > 2 ? *inputs[2].digest : "";
  m.rebuild = req.rebuild;
  if (closure) {
    m.system = req.system;
    m.closure_digest = closure->key;
  }
  m.secrets_digest = secrets_digest;
  m.generation = generation_id(m.config_digest, m.self_digest, m.ssh_digest, m.rebuild.to_json().dump(),
                               m.closure_digest, m.secrets_digest);
  return m;
}

/// Builds the self image when its digest was known but no image of that digest and
/// `manifest_text` is cached: reads the tree now, as it is, and refuses a tree that
/// changed since it was listed.
void build_self_if_uncached(RoleInput& self, std::optional<Build>& self_build, const std::string& manifest_text,
                            const ExportRequest& req) {
  if (self_build || place(self, *self.digest, manifest_text, req).cache_hit) return;
  self_build = build_contents(self, req);
  if (self_build->digest != *self.digest)
    throw InputError(fmt::format("{}: changed while it was exported; nothing was cached, run the export again",
                                 self.source.string()));
}

/// Commits the roles' images and links them, side by side, so their fsyncs share the
/// disk's flushes; the images in the roles' order.
std::vector<ExportedImage> commit_and_link(const std::vector<RoleInput>& inputs, RoleBuilds& builds,
                                           const std::string& manifest_text, const ExportRequest& req) {
  const RoleInput& self = inputs[1];
  const RoleInput* ssh = inputs.size() > 2 ? &inputs[2] : nullptr;
  std::future<ExportedImage> self_image =
      std::async(std::launch::async, [&] { return finish_role(self, builds.self, manifest_text, req); });
  std::future<ExportedImage> ssh_image;
  if (ssh) ssh_image = std::async(std::launch::async, [&] { return finish_role(*ssh, builds.ssh, "", req); });
  std::vector<ExportedImage> images;
  images.push_back(finish_role(inputs[0], builds.config, "", req));
  images.push_back(self_image.get());
  if (ssh) images.push_back(ssh_image.get());
  return images;
}

/// Links the closure image.
ExportedImage link_closure(const ClosureImage& closure, const ExportRequest& req) {
  ExportedImage img;
  img.role = DiskRole::closure;
  img.link = link_of(req, DiskRole::closure);
  img.image = closure.image;
  img.tree_digest = closure.key;
  img.cache_hit = closure.cache_hit;
  img.bytes = fs::file_size(img.image);
  link_image(img.image, img.link);
  return img;
}

/// InputError unless the secrets directory is apart from every exported tree (one
/// inside the other would put the secrets on a cached, shared disk) and outside the
/// Nix store (world-readable), judged by the paths links lead to.
void require_secrets_apart(const ExportRequest& req) {
  std::error_code ec;
  const fs::path secrets = fs::weakly_canonical(fs::absolute(*req.secrets_source), ec);
  auto within = [](const fs::path& inner, const fs::path& outer) {
    auto [o, i] = std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
    return o == outer.end();
  };
  if (within(secrets, "/nix/store"))
    throw InputError(fmt::format("{} (sources.secrets) is in the Nix store, which every user of this host can read: "
                                 "keep secrets in a directory only root reads",
                                 req.secrets_source->string()));
  std::vector<std::pair<const char*, fs::path>> trees = {{"config", req.config_source}, {"self", req.self_source}};
  if (req.ssh_source) trees.emplace_back("ssh", *req.ssh_source);
  for (const auto& [key, tree] : trees) {
    const fs::path t = fs::weakly_canonical(fs::absolute(tree), ec);
    if (within(secrets, t) || within(t, secrets))
      throw InputError(fmt::format("{} (sources.secrets) and {} (sources.{}) overlap: the {} disk is cached and "
                                   "may be shared, so secrets would reach it; keep the secrets directory apart "
                                   "from every exported tree",
                                   req.secrets_source->string(), tree.string(), key, key));
  }
}

/// The VM's secrets disk, from its identity and secrets.
ExportedImage secrets_disk(const ExportRequest& req, const VmIdentity& identity,
                           const std::vector<SecretFile>& secrets) {
  SecretsImage written = write_secrets_image(StateDir{req.out_dir}, identity, secrets);
  ExportedImage img;
  img.role = DiskRole::secrets;
  img.link = img.image = written.image;
  img.cache_hit = !written.rebuilt;
  img.bytes = written.bytes;
  return img;
}

/// Removes the links of an earlier export that had an ssh disk or was host-built.
void drop_stale_links(const ExportRequest& req, bool has_closure) {
  for (auto [gone, name] : {std::pair{!req.ssh_source, "ssh.img"}, std::pair{!has_closure, "closure.img"}}) {
    std::error_code ec;
    if (gone && fs::is_symlink(fs::symlink_status(req.out_dir / name, ec))) fs::remove(req.out_dir / name, ec);
  }
}

}  // namespace

std::vector<DiskRole> exported_roles(const Spec& spec) {
  std::vector<DiskRole> roles = {DiskRole::config, DiskRole::self};
  if (spec.ssh_source) roles.push_back(DiskRole::ssh);
  if (spec.host_built()) roles.push_back(DiskRole::closure);
  roles.push_back(DiskRole::secrets);
  return roles;
}

ExportRequest ExportRequest::from_spec(const Spec& spec) {
  ExportRequest r;
  r.name = spec.name;
  r.config_source = spec.config_source;
  r.self_source = spec.self_source;
  r.ssh_source = spec.ssh_source;
  r.secrets_source = spec.secrets_source;
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
  const ExportRequest req = with_absolute_dirs(request);
  ExportResult result;
  SshFilter ssh_filter(req.allow_private_keys);
  const std::unique_ptr<CacheLock> cache_lock = open_cache(req);
  std::vector<RoleInput> inputs = list_roles(req, ssh_filter);
  // Read once, checked and kept in memory: what is hashed is what the disk gets.
  if (req.secrets_source) require_secrets_apart(req);
  const std::vector<SecretFile> secrets =
      req.secrets_source ? read_secrets(*req.secrets_source) : std::vector<SecretFile>{};
  result.excluded = report_excluded(req, ssh_filter);
  check_links_possible(req, inputs);
  const VmIdentity identity = ensure_identity(StateDir{req.out_dir}, req.name);
  result.machine_id = identity.machine_id;
  RoleBuilds builds = build_missing(inputs, req);
  const std::optional<ClosureImage> closure = closure_for(req);
  result.manifest = manifest_for(
      req, inputs, closure,
      req.secrets_source ? secrets_digest(secrets, read_identity_secret(identity, kSecretsDigestKeyFile)) : "");
  const std::string manifest_text = result.manifest.to_json_text();
  build_self_if_uncached(inputs[1], builds.self, manifest_text, req);
  result.images = commit_and_link(inputs, builds, manifest_text, req);
  for (auto& in : inputs)
    if (in.hashes) in.hashes->save();
  if (closure) result.images.push_back(link_closure(*closure, req));
  result.images.push_back(secrets_disk(req, identity, secrets));
  drop_stale_links(req, closure.has_value());
  return result;
}

}  // namespace sprout
