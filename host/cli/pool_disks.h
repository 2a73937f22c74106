// The commands' side of pool mode (a VM's disks as volumes of a libvirt storage pool,
// spec/libvirt_storage.h): what `destroy` and `gc` do to a pool. STATE/volumes.json
// records what the VM's last `define` made its domain use. A build without libvirt
// knows no pool: it says so where a pool would be touched.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "spec/spec.h"

namespace sprout {

/// STATE/volumes.json.
std::filesystem::path volumes_record_path(const Spec& spec);

/// destroy: the VM's overlay volume, described for the refusal without --delete-disks
/// (empty when it has none, or the spec is not in pool mode).
std::vector<std::string> pool_disks_of(const Spec& spec);
/// destroy --delete-disks: deletes the VM's own volumes and prints each one.
void delete_pool_disks(const Spec& spec);
/// gc: every pool the specs use, cleaned (libvirt/libvirt_pool_gc.h); prints.
void gc_pools(const std::vector<Spec>& specs, bool dry_run);

}  // namespace sprout
