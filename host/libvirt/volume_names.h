// The names of a VM's disks as volumes in a libvirt storage pool (pool mode,
// docs/libvirt.md "Disks as storage volumes"), and what a name says. Pure.
//   base-HEX.FMT         the base image, named by the SHA-256 of its bytes (shared)
//   ROLE-HEX.ext4        an exported image, the image cache's own content-addressed
//                        name (config, self, ssh, closure; shared by the VMs that use it)
//   VM@secrets-HEX.img   the VM's secrets disk (its identity too), by its digest;
//                        never shared: the VM's name is part of it
//   VM@root.qcow2        the VM's overlay, backed by a base volume (its state)
//   NAME@complete        an upload's completion marker: the volume NAME is whole
// '@' is in no VM name (vm_name.h), so a per-VM name says whose it is.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sprout {

std::string base_volume_name(std::string_view sha256_hex, std::string_view format);
/// nullopt when `cache_file_name` is not an image cache name (ROLE-HEX32.ext4).
std::optional<std::string> image_volume_name(std::string_view cache_file_name);
std::string secrets_volume_name(std::string_view vm, std::string_view sha256_hex);
std::string overlay_volume_name(std::string_view vm);
std::string marker_volume_name(std::string_view volume);

struct VolumeName {
  enum Kind { base, image, secrets, overlay, marker, foreign } kind = foreign;
  std::string vm;      ///< secrets, overlay: whose
  std::string target;  ///< marker: the volume it marks complete
  /// An upload sprout makes (and completes with a marker): base, image, secrets.
  bool uploaded() const { return kind == base || kind == image || kind == secrets; }
};

/// What a volume's name says; `foreign` for a name sprout does not make.
VolumeName parse_volume_name(std::string_view name);

}  // namespace sprout
