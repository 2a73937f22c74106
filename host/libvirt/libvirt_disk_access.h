// Who may open a libvirt VM's disks, when its qemu runs as a uid of its own (libvirt's
// static DAC label; the uid from runtime/vm_uid_registry.h).
//
// - The VM's own disks (the overlay, STATE/secrets.img) are given to its uid (uid and
//   gid), which libvirt's DAC driver also does at each start: no other VM's qemu can
//   read them, running or not.
// - The shared disks (the cached config, self, ssh and closure images other VMs may
//   use too, and the base) stay the owner's (the user running sprout, root under the
//   units): libvirt leaves them alone (relabel='no' in the domain XML) and each VM
//   that uses one gets a POSIX ACL entry to read it (user:UID:r--), nothing more. No
//   qemu can write or chmod them; other local users gain nothing. A base anyone may
//   read (the Nix store's) needs no entry and is not touched.
// - What libvirt's qemu user (qemu.conf's `user`) was given by an earlier sprout,
//   which let libvirt chown every disk to that one user, is taken back: a shared image
//   becomes the owner's again, 0400; the base the owner's, without write bits for
//   group and others; the VM's own disks its uid's.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <vector>

#include "spec/spec.h"

namespace sprout {

/// Whether the VM's qemu gets a uid of its own: its libvirt is this host's system
/// daemon (qemu:///system, qemu+unix:///system), which can run qemu as any uid, and
/// sprout runs as root, which can give disks to it. A session daemon runs qemu as its
/// user; a remote one's files are another host's.
bool vm_uid_applies(const Spec& spec);

/// The gid a KVM domain's qemu needs with a uid of its own (which has no supplementary
/// groups): /dev/kvm's group where /dev/kvm is open to its group and not to others
/// (Debian's 0660 kvm); else none (the gid is the uid).
std::optional<gid_t> kvm_gid_for(bool kvm);
/// The URI half of that: this host's system daemon.
bool local_system_libvirt(const std::string& uri);

/// The shared disks of `spec` that exist now: the images its links point to (not
/// secrets.img) and `backing` (the overlay's base).
std::vector<std::filesystem::path> shared_disks(const Spec& spec, const std::filesystem::path& backing);

/// Before the domain is defined: lets `uid` read the shared disks and gives it the
/// VM's own, taking back what `libvirt_qemu_uid` (libvirt's qemu user, when known)
/// owns. std::runtime_error naming the file when one cannot be changed.
void open_disks_to(const Spec& spec, const std::filesystem::path& backing, uid_t uid,
                   std::optional<uid_t> libvirt_qemu_uid);

/// When the VM is destroyed (its uid released): removes `uid`'s ACL entries from every
/// image in the VM's cache directory and from `backing`. Returns how many it removed.
/// `failed` (when given) counts the images whose entry could not be removed.
int close_shared_disks_to(const Spec& spec, const std::filesystem::path& backing, uid_t uid, int* failed = nullptr);

}  // namespace sprout
