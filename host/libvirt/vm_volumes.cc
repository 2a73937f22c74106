#include "libvirt/vm_volumes.h"

#include <algorithm>
#include <chrono>
#include <regex>
#include <set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/file_digest.h"
#include "base/file_lock.h"
#include "base/sha256.h"
#include "libvirt/libvirt_domain_xml.h"
#include "libvirt/libvirt_pool.h"
#include "libvirt/libvirt_pool_gc.h"
#include "libvirt/volume_names.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

constexpr unsigned kSharedMode = 0400;   // read-only data: the base, the exported images
constexpr unsigned kSecretsMode = 0400;  // the VM's own; libvirt hands it to qemu's user at start
constexpr unsigned kOverlayMode = 0600;

std::set<std::string> names_of(StoragePool& pool) {
  const auto v = pool.volume_names();
  return {v.begin(), v.end()};
}

std::string overlay_xml(const std::string& name, std::uint64_t capacity, const std::string& backing,
                        const std::string& backing_format) {
  return fmt::format(
      "<volume>\n  <name>{}</name>\n  <capacity unit='bytes'>{}</capacity>\n  <allocation unit='bytes'>0</allocation>\n"
      "  <target>\n    <format type='qcow2'/>\n    {}\n  </target>\n"
      "  <backingStore>\n    <path>{}</path>\n    <format type='{}'/>\n  </backingStore>\n</volume>\n",
      xml_escape(name), capacity, volume_permissions_xml(kOverlayMode), xml_escape(backing), xml_escape(backing_format));
}

// The <format> of a volume XML's <backingStore>, or "" when it names none.
std::string backing_format_of(const std::string& xml) {
  static const std::regex re(R"(<backingStore>[\s\S]*?<format type='([a-z0-9]+)'/>)");
  std::smatch m;
  return std::regex_search(xml, m, re) ? m[1].str() : "";
}

/// The volume `name` holding `file`: uploaded unless the pool has it whole. What the
/// stream carries must hash to `sha256` (the digest the name was made from, or the
/// file's as it was hashed): a file that changed since, or while it was read, is not
/// made a volume.
void ensure_uploaded(StoragePool& pool, std::set<std::string>& names, const std::string& name, const fs::path& file,
                     const std::string& sha256, unsigned mode, VmVolumes& out) {
  if (upload_complete(names, name)) return;
  out.uploads.push_back(upload_volume(pool, name, file, sha256, mode));
  names.insert(name);
  names.insert(marker_volume_name(name));
}

}  // namespace

std::uint64_t VmVolumes::carried_bytes() const {
  std::uint64_t n = 0;
  for (const auto& u : uploads) n += u.data_bytes;
  return n;
}

std::vector<std::string> VmVolumes::used() const {
  std::vector<std::string> out{overlay};
  const std::string base = fs::path(backing_path).filename().string();
  for (const auto& v : std::vector<std::string>{base}) out.insert(out.end(), {v, marker_volume_name(v)});
  for (const auto& d : disks) out.insert(out.end(), {d.volume, marker_volume_name(d.volume)});
  return out;
}

std::unique_ptr<FileLock> lock_pool(const fs::path& dir, const std::string& uri, const std::string& pool) {
  fs::create_directories(dir);
  const fs::path file = dir / (sha256_hex(uri + "\n" + pool).substr(0, 32) + ".lock");
  return std::make_unique<FileLock>(
      file, FileLock::exclusive, std::chrono::minutes(15),
      fmt::format("storage pool {} at {}: another sprout (define or gc) of this host has held its lock ({}) for 15 "
                  "minutes; let it finish, then try again",
                  pool, uri, file.string()),
      [&] { spdlog::info("storage pool {} at {}: waiting for another sprout's upload or gc", pool, uri); });
}

VmVolumes put_vm_disks_in_pool(LibvirtConnection& conn, const Spec& spec, const VmDiskFiles& files) {
  StoragePool pool = StoragePool::ensure(conn, spec.libvirt_pool, spec.libvirt_pool_path);
  VmVolumes out;
  out.pool = pool.name();
  out.removed_partials = remove_partial_uploads(pool, volumes_in_use(conn, pool));
  std::set<std::string> names = names_of(pool);

  // The overlay first: an existing one keeps its base, and only a new one needs the spec's.
  out.overlay = overlay_volume_name(spec.name);
  const std::string base_sha256 = file_sha256(files.base, files.digest_memo_dir);
  const std::string want_base = base_volume_name(base_sha256, files.base_format);
  if (auto existing = pool.volume(out.overlay)) {
    out.overlay_action = "kept";
    out.backing_path = existing->backing_path();
    out.backing_format = backing_format_of(existing->xml());
    const std::string base = fs::path(out.backing_path).filename().string();
    if (out.backing_path.empty() || parse_volume_name(base).kind != VolumeName::base || !upload_complete(names, base))
      throw LibvirtError(fmt::format(
          "{}: its overlay {} names {} as its backing file, which is not a whole base volume of pool {}; the overlay "
          "is the VM's state and is not changed. Look at it (virsh -c {} vol-dumpxml --pool {} {}); to start the VM "
          "afresh, `sprout destroy --delete-disks` it and define it again",
          spec.name, existing->describe(), out.backing_path.empty() ? "nothing" : out.backing_path, pool.name(),
          conn.uri(), pool.name(), out.overlay));
    if (base != want_base)
      spdlog::warn("{}: the spec's base is now {} (volume {}), but the overlay {} keeps the base it was made on ({}): "
                   "in pool mode an overlay volume is never rebased or recreated (baseChange applies to files). To "
                   "move the VM to the new base, `sprout destroy --delete-disks` it and define it again",
                   spec.name, files.base.string(), want_base, out.overlay, base);
  } else {
    ensure_uploaded(pool, names, want_base, files.base, base_sha256, kSharedMode, out);
    auto base = pool.volume(want_base);
    if (!base) throw LibvirtError(fmt::format("pool {} at {}: volume {} vanished after its upload", pool.name(), conn.uri(), want_base));
    out.backing_path = base->path();
    out.backing_format = files.base_format;
    pool.create(overlay_xml(out.overlay, files.overlay_capacity, out.backing_path, out.backing_format), out.overlay);
    out.overlay_action = "created";
    spdlog::info("{}: created its overlay volume {} on {}", spec.name, out.overlay, want_base);
  }

  for (const auto& [role, file] : files.disks) {
    std::string name;
    unsigned mode = kSharedMode;
    const std::string sha256 = file_sha256(file, files.digest_memo_dir);
    if (role == DiskRole::secrets) {
      name = secrets_volume_name(spec.name, sha256);
      mode = kSecretsMode;
    } else {
      const auto n = image_volume_name(file.filename().string());
      if (!n)
        throw std::runtime_error(fmt::format("{}: {} is not an image of the cache (ROLE-DIGEST.ext4); export again",
                                             spec.name, file.string()));
      name = *n;
    }
    ensure_uploaded(pool, names, name, file, sha256, mode, out);
    out.disks.push_back({role, name});
  }
  return out;
}

std::vector<std::string> remove_vm_volumes(LibvirtConnection& conn, const Spec& spec) {
  auto pool = StoragePool::find(conn, spec.libvirt_pool);
  if (!pool) return {};
  std::vector<std::string> removed;
  // Markers first: a volume whose marker went and that stays is a partial upload,
  // never attached and removed later; never the other way round.
  std::vector<std::string> names = pool->volume_names();
  std::stable_partition(names.begin(), names.end(),
                        [](const std::string& n) { return parse_volume_name(n).kind == VolumeName::marker; });
  for (const auto& n : names) {
    const VolumeName v = parse_volume_name(n);
    const VolumeName target = v.kind == VolumeName::marker ? parse_volume_name(v.target) : v;
    const bool own = (target.kind == VolumeName::secrets || target.kind == VolumeName::overlay) && target.vm == spec.name;
    if (!own) continue;
    if (auto vol = pool->volume(n)) {
      vol->remove();
      removed.push_back(n);
    }
  }
  return removed;
}

std::optional<std::string> vm_overlay_volume(LibvirtConnection& conn, const Spec& spec) {
  auto pool = StoragePool::find(conn, spec.libvirt_pool);
  if (!pool) return std::nullopt;
  const std::string name = overlay_volume_name(spec.name);
  if (pool->volume(name)) return name;
  return std::nullopt;
}

}  // namespace sprout
