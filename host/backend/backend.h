// Who runs a VM, behind one interface: `sprout run` under QEMU (its run lock names the
// supervisor) or a libvirt domain. The commands that are not about one backend (status,
// wait, stop, destroy, console) ask the VM's backend and never branch on its name. A
// build without libvirt has a libvirt backend that says so when asked to act, and
// knows nothing (nullopt) when asked whether a domain runs. Only domains sprout defined
// (they carry its metadata) are stopped or undefined.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "spec/spec.h"

namespace sprout {

/// How long the guest gets to power off after the power button before it is stopped
/// hard: the spec's shutdownTimeoutSeconds when none is given; zero: a hard power-off
/// at once (virsh's destroy), the disks and definition kept.
struct StopRequest {
  std::optional<std::chrono::seconds> grace;
  std::chrono::seconds grace_for(const Spec& spec) const {
    return grace.value_or(std::chrono::seconds(spec.shutdown_timeout_seconds));
  }
};

class VmBackend {
 public:
  virtual ~VmBackend() = default;
  /// Whether a run of the VM exists now; nothing when the backend cannot be asked.
  virtual std::optional<bool> running(const Spec& spec) const = 0;
  /// Stops it: the power button, then after `how`'s grace harder; bounded. Returns how
  /// it ended ("not running" when it was not). Throws when it cannot stop it.
  virtual std::string stop(const Spec& spec, const StopRequest& how) const = 0;
  /// stop(), then removes what the backend keeps of the VM (libvirt: its domain
  /// definition; disks and NVRAM/TPM state stay). Returns what happened.
  virtual std::string remove(const Spec& spec) const = 0;
  /// How a user starts the VM, for messages.
  virtual std::string start_hint(const Spec& spec) const = 0;
  /// What it means that the VM runs but has no live record yet (for `sprout wait`).
  virtual std::string unrecorded_note(const Spec& spec) const = 0;
  /// The program that attaches to the VM's console, or empty: attach to
  /// STATE/console.sock.
  virtual std::vector<std::string> console_command(const Spec& spec) const = 0;
};

/// The backend the spec names.
const VmBackend& backend_for(const Spec& spec);

/// Each backend alone (backend_for() picks one).
const VmBackend& qemu_backend();
const VmBackend& libvirt_backend();

}  // namespace sprout
