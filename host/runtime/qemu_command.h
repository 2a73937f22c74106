// The qemu-system-x86_64 command line for a VM spec (QEMU backend of `sprout run`):
// the overlay as boot disk, the exported disks read-only with their virtio serials,
// optional direct kernel boot, memory and vcpus, KVM or TCG, the console log, the
// network, the status channel (virtio-serial port sprout.status.0 on a unix socket
// in the state directory, qemu listening), the QMP socket and qemu's confinement
// (its user and sandbox, as qemu_confinement.h chose them). The spec's qemuArgs
// come last. Pure: it reads nothing from disk, so it is unit-tested directly.
#pragma once

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "disk_role.h"
#include "spec/spec.h"

namespace sprout {

struct QemuEnvironment {
  std::string qemu_binary = "qemu-system-x86_64";
  bool kvm = false;  ///< -accel kvm -cpu host (else TCG): kvm_probe.h's choose_accel() decides
  /// The exported disks present in the state directory, in attach order.
  std::vector<std::pair<DiskRole, std::filesystem::path>> disks;
  /// true: qemu waits (before starting the guest) until a recorder connects to the
  /// status socket, so nothing the guest writes is ever written to nobody.
  bool status_wait_for_reader = true;
  /// The user switch and the sandbox (qemu_confinement.h's confinement_args), right
  /// after -nodefaults.
  std::vector<std::string> confinement;
  /// The VM's machine-id (identity/vm_identity.h): handed to the guest's systemd as
  /// the credential system.machine_id in an SMBIOS type 11 string. "" = none.
  std::string machine_id;
};

/// InputError when the spec asks for something the QEMU backend cannot do
/// (network.mode "libvirt", a state directory too long for its sockets).
void check_qemu_can_run(const Spec& spec);

/// The argument vector (argv[0] is the binary); check_qemu_can_run's errors first.
std::vector<std::string> build_qemu_command(const Spec& spec, const QemuEnvironment& env);

}  // namespace sprout
