// The disks sprout exports to a guest, and everything both sides must agree on about
// each: its virtio serial (how the guest finds it; at most 20 bytes, because QEMU cuts
// longer serials silently), its ext4 label (fallback), its default mount point in the
// guest, and whether a guest can work without it. `closure` exists only for a VM the
// host specializes (the host-built system's store paths, as a local binary cache).
// `secrets` is the VM's own: its identity (ssh host key, machine-id) and the files of
// its sources.secrets, built in its state directory, never cached or shared, and
// read only by the agent's early mode (sprout-agent --early), never by its main run.
#pragma once

#include <array>
#include <optional>
#include <string_view>

namespace sprout {

enum class DiskRole { config, self, ssh, closure, secrets };

struct DiskRoleInfo {
  DiskRole role;
  std::string_view name;         ///< "config", "self", "ssh", "closure", "secrets": used in file names and specs
  std::string_view serial;       ///< virtio-blk serial, <= 20 bytes
  std::string_view label;        ///< ext4 label, <= 16 bytes
  std::string_view mount_point;  ///< default guest mount point
  bool required;                 ///< a guest without it cannot specialize
};

inline constexpr std::size_t kMaxVirtioSerialBytes = 20;
inline constexpr std::size_t kMaxExt4LabelBytes = 16;

/// All roles in mount order (config first: self is mounted inside it).
const std::array<DiskRoleInfo, 5>& disk_roles();
const DiskRoleInfo& role_info(DiskRole role);
std::optional<DiskRole> disk_role_from_name(std::string_view name);

}  // namespace sprout
