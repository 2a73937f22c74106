// Where a libvirt VM's disks live: local files handed to libvirt by path ("files", as
// sprout always did), or volumes in a storage pool of the daemon's host ("pool"),
// uploaded through libvirt's API so that nothing relies on a shared filesystem.
// The default follows the URI: a remote URI (libvirt_uri_is_remote) gets "pool",
// a local one "files" (docs/libvirt.md, "Disks as storage volumes").
#pragma once

#include <string_view>

namespace sprout {

enum class LibvirtStorage { files, pool };

inline constexpr const char* kDefaultLibvirtPool = "sprout";
inline constexpr const char* kDefaultLibvirtPoolPath = "/var/lib/sprout/pool";

/// Whether a libvirt URI names a daemon that may be on another host: its host part
/// (between "//" and the next '/', less any "user@" and ":port") is not empty, as in
/// qemu+ssh://other/system, qemu+tcp://10.0.0.2/system, and also qemu+ssh://localhost/system
/// (sprout cannot tell whether a named host shares its files). No host part
/// (qemu:///system, qemu+unix:///system?socket=..., qemu:///session, test:///default):
/// this host. A URI without "://" (a libvirt alias of libvirt.conf) counts as remote.
bool libvirt_uri_is_remote(std::string_view uri);

/// The storage a spec gets when it names none: pool for a remote URI, else files.
inline LibvirtStorage default_libvirt_storage(std::string_view uri) {
  return libvirt_uri_is_remote(uri) ? LibvirtStorage::pool : LibvirtStorage::files;
}

}  // namespace sprout
