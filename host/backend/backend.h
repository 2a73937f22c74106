// Who runs a VM, behind one interface: `sprout run` under QEMU (its run lock names the
// supervisor) or a libvirt domain. The commands that are not about one backend (status,
// wait, watch, stop, destroy, console) ask the VM's backend and never branch on its
// name. A libvirt domain's status channel and console are reached through libvirt's
// API (libvirt/libvirt_stream.h), never through a path on this host, so they work for
// a domain on another host too. A
// build without libvirt has a libvirt backend that says so when asked to act, and
// knows nothing (nullopt) when asked whether a domain runs. Only domains sprout defined
// (they carry its metadata) are stopped or undefined.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/channel_source.h"
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

/// A session on a VM's serial console, attached through its backend.
class ConsoleSession {
 public:
  virtual ~ConsoleSession() = default;
  /// Poll it for input.
  virtual int fd() const = 0;
  enum class Read { data, again, ended };
  /// Appends what the console has, without blocking.
  virtual Read read(std::string& out) = 0;
  /// Sends keystrokes (bounded wait); false when the console is gone.
  virtual bool write(std::string_view bytes) = 0;
  /// How it ended.
  virtual std::string why() const = 0;
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
  /// Where `sprout watch` reads the VM's status channel.
  virtual std::unique_ptr<ChannelSource> status_channel(const Spec& spec) const = 0;
  /// Attaches to the VM's serial console (one session at a time; throws naming who
  /// has it, or that the VM does not run); nullptr: the console is STATE/console.sock,
  /// which the caller attaches to (qemu).
  virtual std::unique_ptr<ConsoleSession> attach_console(const Spec& spec) const = 0;
};

/// A seam for the runtime suite's fake guests (tests/runtime/test_fake_guest.py), which
/// play a libvirt domain's qemu on STATE/status.sock to test the recorder, `status` and
/// `wait` without libvirt: with $SPROUT_TEST_LOCAL_STATUS_SOCKET set, a libvirt VM's
/// status channel is read from that socket, as a qemu VM's is. Unset (everywhere but
/// there), nullptr: a real libvirt domain has no socket there (libvirt places it).
std::unique_ptr<ChannelSource> test_local_status_channel(const Spec& spec);

/// The backend the spec names.
const VmBackend& backend_for(const Spec& spec);

/// Each backend alone (backend_for() picks one).
const VmBackend& qemu_backend();
const VmBackend& libvirt_backend();

}  // namespace sprout
