// A VM's disks as volumes of a libvirt storage pool (pool mode; docs/libvirt.md "Disks
// as storage volumes"): what `define` puts there and what `destroy --delete-disks`
// takes away. Volume names: volume_names.h; uploads and their markers: volume_upload.h.
//
// put_vm_disks_in_pool promises: the base is uploaded once per content, an exported
// image only when the pool lacks it, the VM's secrets disk into a volume of its own
// (never shared); the overlay volume is created once, as a qcow2 backed by the base
// volume, and never overwritten afterwards (it is the VM's state: an existing one keeps
// the base it was made on, whatever the spec's base is now); no partial upload is ever
// named in the result (each one found is deleted first). The caller holds the pool's
// lock on this host (lock_pool) until the domain names the volumes, so that a gc of
// this host never removes what a define is about to use.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "disk_role.h"
#include "libvirt/libvirt_connection.h"
#include "libvirt/volume_upload.h"
#include "spec/spec.h"

namespace sprout {

class FileLock;

/// The local files of a VM's disks, after export.
struct VmDiskFiles {
  std::filesystem::path base;
  std::string base_format;  ///< "qcow2" or "raw"
  std::uint64_t overlay_capacity = 0;  ///< the overlay's virtual size in bytes
  /// The read-only disks in the order they are attached; secrets (the VM's own) among them.
  std::vector<std::pair<DiskRole, std::filesystem::path>> disks;
  /// Where remembered digests go (base/file_digest.h): the image cache.
  std::filesystem::path digest_memo_dir;
};

struct PoolDisk {
  DiskRole role;
  std::string volume;
};

struct VmVolumes {
  std::string pool;
  std::string overlay;         ///< its volume name
  std::string overlay_action;  ///< "created" or "kept"
  std::string backing_path;    ///< the base volume's file on the daemon's host
  std::string backing_format;
  std::vector<PoolDisk> disks;  ///< the read-only disks, in attach order
  std::vector<UploadResult> uploads;
  std::vector<std::string> removed_partials;
  std::uint64_t carried_bytes() const;
  /// Every volume the VM uses: overlay, its base, disks (and their markers).
  std::vector<std::string> used() const;
};

/// The pool's lock on this host: `dir`/HASH.lock for the pair (uri, pool); waits at
/// most 15 minutes (an upload of a large base), else throws saying who to wait for.
std::unique_ptr<FileLock> lock_pool(const std::filesystem::path& dir, const std::string& uri, const std::string& pool);

VmVolumes put_vm_disks_in_pool(LibvirtConnection& conn, const Spec& spec, const VmDiskFiles& files);

/// destroy --delete-disks: deletes the VM's own volumes (its overlay, its secrets
/// volumes and their markers) from the spec's pool, never a shared one. Returns the
/// names deleted; nothing when the daemon has no such pool.
std::vector<std::string> remove_vm_volumes(LibvirtConnection& conn, const Spec& spec);

/// The VM's overlay volume's name when the pool has one (destroy asks first).
std::optional<std::string> vm_overlay_volume(LibvirtConnection& conn, const Spec& spec);

}  // namespace sprout
