// A uid of its own for one VM's qemu while it runs, as systemd's DynamicUser= gives a
// service one: so that a qemu a guest has taken over cannot signal, trace or read
// another VM's qemu. Taken from sprout's range (kDynamicUidFirst, 65536 uids, inside
// what systemd's UIDS-GIDS.md leaves unassigned), never a uid or gid the user database
// knows nor one any process runs as. A claim is a file REGISTRY/UID (created with
// O_EXCL under REGISTRY/.lock) naming the VM and the claiming process; it is removed
// when the run ends. A claim whose process is gone is stale: its uid is taken back,
// first killing what still runs under it (a qemu whose sprout was killed: the
// parent-death signal does not survive qemu's switch of user). The gid is the uid.
// What a uid leaves in IPC and /dev/shm is removed before it is used again. A uid a
// libvirt VM holds (vm_uid_registry.h: `reserved`) is never claimed, running or not.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace sprout {

inline constexpr uid_t kDynamicUidFirst = 0x73700000;  ///< 1936719872
inline constexpr uid_t kDynamicUidCount = 0x10000;

/// The uid of sprout's range a registry file is named by (its decimal number);
/// nothing for any other name.
std::optional<uid_t> uid_of_registry_file(const std::string& name);

/// Where root's claims are kept (/run: emptied at boot, with the processes).
std::filesystem::path default_uid_registry();

class DynamicUid {
 public:
  /// Claims a free uid for `vm`, trying the one its name hashes to first (a VM usually
  /// gets the same uid run after run). std::runtime_error when every uid is taken.
  static DynamicUid claim(const std::filesystem::path& registry, const std::string& vm,
                          const std::filesystem::path& reserved);
  /// The uid `vm` would try first (for a dry run's command line).
  static uid_t first_choice(const std::string& vm);

  DynamicUid(DynamicUid&& other) noexcept;
  DynamicUid& operator=(DynamicUid&&) = delete;
  ~DynamicUid();  ///< releases the claim

  uid_t uid() const { return uid_; }

 private:
  DynamicUid(std::filesystem::path claim_file, uid_t uid) : file_(std::move(claim_file)), uid_(uid) {}
  std::filesystem::path file_;
  uid_t uid_ = 0;
};

/// Removes what a uid may have left behind once nothing runs as it, as systemd's
/// RemoveIPC= does for a DynamicUser=: its System V shared memory, semaphores and
/// message queues, and its files in /dev/shm (POSIX shared memory and semaphores).
/// Done when a claim is released and when a uid is claimed.
void remove_ipc_of(uid_t uid);

/// Pids of the processes whose real, effective or saved uid is `uid` (from /proc;
/// zombies, which run nothing, are not counted).
std::vector<pid_t> processes_running_as(uid_t uid);

}  // namespace sprout
