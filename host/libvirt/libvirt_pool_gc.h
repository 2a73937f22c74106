// `sprout gc` for a storage pool (pool mode): deletes the volumes sprout uploads that
// nothing uses, and partial uploads. Kept: every overlay volume (a VM's state: only
// `destroy --delete-disks` removes one), the base volume any overlay is backed by,
// every volume a spec of the spec directory uses (`used`: what each VM's last define
// recorded), every volume any domain of the daemon names (its live or persistent
// definition), and every volume whose name sprout does not make. A removed volume's
// marker goes first (volume_upload.h). The caller holds the pool's lock (lock_pool).
#pragma once

#include <set>
#include <string>
#include <vector>

#include "libvirt/libvirt_connection.h"
#include "libvirt/libvirt_pool.h"

namespace sprout {

struct PoolGcReport {
  std::vector<std::string> removed;  ///< volumes (markers included)
  std::vector<std::string> kept;     ///< sprout's volumes in use (markers not listed)
  bool pool_found = false;
};

/// The volumes of `pool` that something depends on: every overlay volume, the volume
/// each overlay is backed by, and every volume a domain of the daemon names (its live
/// or persistent definition, by pool and volume or by a spelled-out backing file).
/// Such a volume is never deleted, even without its completion marker: a VM's disk
/// would go with it (it is reported instead).
std::set<std::string> volumes_in_use(LibvirtConnection& conn, StoragePool& pool);

PoolGcReport collect_pool_garbage(LibvirtConnection& conn, const std::string& pool, const std::set<std::string>& used,
                                  bool dry_run);

}  // namespace sprout
