// One VM's supervisor loop, for `sprout run` and `sprout watch` alike: one poll loop
// that records the status channel (connecting the moment the socket is there, again
// whenever it goes away), keeps the host part of the record (the supervisor's pid,
// and "stopped" with how it ended), passes the guest's phase to systemd (READY=1 on
// the outcome, or at the first connection when `ready` is "started").
//
// With a qemu command line (`sprout run`) it starts qemu and stays with it for its
// whole life: follows QMP events (never waiting for QMP: qmp_client.h), and turns
// SIGTERM/SIGINT into a graceful shutdown (system_powerdown, then quit after the
// spec's shutdown timeout, then SIGKILL). Guest reboots happen inside qemu and do not
// end the run. qemu gets PR_SET_PDEATHSIG so it never outlives a killed supervisor.
// Without one (`sprout watch`: libvirt or `sprout run --external-recorder` runs the
// VM) it only records, continuing the existing record, until SIGTERM/SIGINT/SIGHUP.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/channel_source.h"
#include "spec/spec.h"

namespace sprout {

/// How a run ended; the value is `sprout run`'s (and `sprout watch`'s) exit status.
enum class RunOutcome : int {
  powered_off = 0,      ///< the guest powered off (on its own or when asked)
  recorder_stopped = 0, ///< watch: the recorder was asked to stop
  failed = 1,           ///< qemu could not start or exited with an error
  quit_after_timeout = 3,  ///< qemu was quit: the guest ignored the power button, or a hard stop was asked
  killed = 4,           ///< qemu was killed: by sprout after quit timed out, or by a signal someone sent
  crashed = 5,          ///< qemu died of a signal of its own fault (SIGABRT, SIGSEGV, ...: those that dump core)
};

struct SuperviseOptions {
  /// The qemu command line; empty: somebody else runs the VM, only record it.
  std::vector<std::string> argv;
  bool record = true;             ///< false: `sprout watch` records instead
  /// Where the status channel is read from; null: qemu's status socket in the state
  /// directory (the VM's backend says which: VmBackend::status_channel).
  std::shared_ptr<ChannelSource> channel;
  int quit_grace_seconds = 10;    ///< after QMP quit, before SIGKILL
  /// Said after qemu's last words when qemu fails before the guest ran: which spec key
  /// to change ("" for none).
  std::string accel_hint;
};

RunOutcome supervise(const Spec& spec, const SuperviseOptions& options);

}  // namespace sprout
