// Finding the exported disks in the guest by their virtio serial (common/disk_role.h):
// udev's /dev/disk/by-id/virtio-SERIAL link when it exists and the disk it points to
// has that serial (NixOS: no directory scan at all); else, without udev, each
// /sys/block/NAME/serial is compared with the role's serial; when no serial matches, /dev/disk/by-label/LABEL, then the ext4 superblock label of every block
// device (magic 0xEF53 at byte 1080, label at 1144) are tried. The device node is
// /dev/NAME, created from /sys/block/NAME/dev (mknod) when devtmpfs has not made it.
// All paths live under a root prefix. Waiting is bounded: find_disks() polls until
// every wanted role is found or the deadline passes, never longer.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "disk_role.h"

namespace sprout::agent {

struct FoundDisk {
  DiskRole role;
  std::string device;    ///< guest path, e.g. /dev/vdb
  std::string sys_name;  ///< e.g. vdb
  std::string found_by;  ///< "by-id" (udev's link), "serial" (/sys/block) or "label"
  bool read_only = false;  ///< /sys/block/NAME/ro
};

/// One scan, no waiting. Roles not found are absent from the result.
std::map<DiskRole, FoundDisk> scan_disks(const std::string& root, const std::vector<DiskRole>& roles);

/// Scans every `poll` until all `roles` are found or `wait` has passed. `optional`
/// roles are looked for in the same scans, never waited for.
std::map<DiskRole, FoundDisk> find_disks(const std::string& root, const std::vector<DiskRole>& roles,
                                         std::chrono::milliseconds wait,
                                         std::chrono::milliseconds poll = std::chrono::milliseconds(20),
                                         const std::vector<DiskRole>& optional = {});

/// The ext2/3/4 label of a block device or image file, or nullopt when it is not ext*.
std::optional<std::string> read_ext4_label(const std::string& device);

}  // namespace sprout::agent
