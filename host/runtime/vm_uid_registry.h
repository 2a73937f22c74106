// The uids of libvirt VMs: each VM's qemu runs as a uid of its own (libvirt's static
// DAC label), like a qemu-backend VM's (dynamic_uid.h), but for as long as the VM
// exists, not for one run: a domain outlives the sprout that defined it, libvirt
// starts it by itself, and its disks stay its uid's between runs. Taken from the same
// range as the dynamic uids, never one the user database knows, one a process runs as
// or one a qemu-backend run has claimed; the dynamic claims in turn skip these.
//
// A record is a file REGISTRY/UID holding {"vm", "stateDir"}: one per VM, the VM being
// its name and its state directory (two VMs of one name under two libvirt URIs have
// two state directories, so two uids). It is made (O_EXCL) under REGISTRY/.lock and
// the dynamic registry's lock, so that no dynamic claim takes the uid meanwhile, and
// removed only by release() (`sprout destroy`); `undefine` keeps it, as it keeps the
// disks the uid owns.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>

namespace sprout {

/// Where root's records are kept (/var/lib: they last as long as the VMs).
std::filesystem::path default_vm_uid_registry();

struct VmUidRegistry {
  std::filesystem::path dir = default_vm_uid_registry();
  /// The dynamic claims (dynamic_uid.h) these uids must never meet.
  std::filesystem::path dynamic_claims;

  /// The VM's uid: the one recorded for it, else a free one, recorded now (trying
  /// the one its name hashes to first). std::runtime_error when none is free.
  uid_t assign(const std::string& vm, const std::filesystem::path& state_dir) const;
  /// The uid recorded for the VM, if any.
  std::optional<uid_t> recorded(const std::string& vm, const std::filesystem::path& state_dir) const;
  /// Removes the VM's record; returns the uid it had.
  std::optional<uid_t> release(const std::string& vm, const std::filesystem::path& state_dir) const;
  /// Whether `uid` is recorded for some VM.
  bool taken(uid_t uid) const;
};

/// The registry of this host (default_vm_uid_registry(), default_uid_registry()).
VmUidRegistry host_vm_uid_registry();

}  // namespace sprout
