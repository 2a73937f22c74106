// The libvirt domain XML for a VM spec (libvirt backend). Pure: the caller passes in
// what it knows about the host (KVM or not, the overlay's real backing file), so the
// result is a function of its inputs and unit-tested directly. docs/libvirt.md says
// what the XML contains and why.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/types.h>

#include "disk_role.h"
#include "spec/spec.h"

namespace sprout {

/// The XML namespace of sprout's <metadata> element in a domain.
inline constexpr const char* kLibvirtMetadataUri = "urn:sprout:libvirt-domain:1";
inline constexpr const char* kLibvirtMetadataPrefix = "sprout";

/// Pool mode (spec/libvirt_storage.h): the volumes the domain's disks are, in the
/// storage pool `pool` of the daemon's host (vm_volumes.h made them).
struct PoolVolumes {
  std::string pool;
  std::string overlay;  ///< the overlay volume (qcow2)
  std::string backing_path, backing_format;  ///< its base volume's file on the daemon's host
  std::vector<std::pair<DiskRole, std::string>> disks;  ///< read-only disks in attach order
};

struct DomainHostFacts {
  bool kvm = false;  ///< domain type 'kvm' (else 'qemu', software emulation)
  /// The overlay's backing file and its format, when known (after prepare: the base
  /// the overlay really uses, which with baseChange "keep" may be an older base).
  /// Unset: the spec's base.image and base.format.
  std::optional<std::filesystem::path> backing;
  std::optional<std::string> backing_format;
  /// The VM's machine-id, handed to the guest's systemd as an SMBIOS type 11 string
  /// (the credential system.machine_id); "" = none.
  std::string machine_id;
  /// The uid (and gid) the VM's qemu runs as (vm_uid_registry.h), a static DAC label:
  /// libvirt gives the VM's own disks (overlay, secrets disk) to it, and leaves the
  /// shared ones (the cached images, the base) alone (relabel='no'): they are root's,
  /// and readable to this uid by their ACLs (libvirt_disk_access.h). Unset: no label,
  /// qemu runs as libvirt's qemu user (qemu.conf), which then owns every disk.
  std::optional<uid_t> qemu_uid;
  /// The gid with it; unset: the uid. A KVM domain where /dev/kvm is not open to all
  /// (Debian: 0660, group kvm) needs /dev/kvm's group, which every such VM then shares.
  std::optional<gid_t> qemu_gid;
  /// Set: the disks are volumes of a pool (<disk type='volume'>), not files. Then no
  /// static label applies (the daemon's host owns those files: docs/libvirt.md).
  std::optional<PoolVolumes> volumes;
};

/// The domain XML. Carries <metadata><sprout:vm> with the spec file and a digest of
/// everything else (definition_digest), so a later define can tell an unchanged
/// definition without comparing libvirt's normalized XML. InputError for what the
/// libvirt backend cannot express (port forwards on a libvirt network, a hostAddress
/// that is not an IPv4 address).
std::string domain_xml(const Spec& spec, const DomainHostFacts& facts);

/// A stable UUID for a VM name (from SHA-256; RFC 9562 version 8 layout).
std::string domain_uuid(std::string_view vm_name);

/// The digest domain_xml() embeds: extracted from an XML text, or "" when absent.
std::string embedded_digest(std::string_view xml);

/// XML text/attribute escaping (& < > ' ").
std::string xml_escape(std::string_view text);

}  // namespace sprout
