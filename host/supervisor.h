// `sprout run`'s supervisor: starts qemu with the VM's command line and stays with it
// for its whole life, in one poll loop: it records the status channel (connecting
// the moment qemu has made the socket; qemu waits for that before the guest runs),
// follows QMP events (never waiting for QMP: qmp_client.h), passes the guest's phase to
// systemd, and turns SIGTERM/SIGINT
// into a graceful shutdown (system_powerdown, then quit after the spec's shutdown
// timeout, then SIGKILL). Guest reboots happen inside qemu and do not end the run.
// qemu gets PR_SET_PDEATHSIG so it never outlives a killed supervisor.
#pragma once

#include <string>
#include <vector>

#include "spec.h"

namespace sprout {

/// How a run ended; the value is `sprout run`'s exit status.
enum class RunOutcome : int {
  powered_off = 0,      ///< the guest powered off (on its own or when asked)
  failed = 1,           ///< qemu could not start or exited with an error
  quit_after_timeout = 3,  ///< the guest ignored the power button; qemu was quit
  killed = 4,           ///< qemu had to be killed (or died from a signal)
};

struct SuperviseOptions {
  std::vector<std::string> argv;  ///< the qemu command line
  bool record = true;             ///< false: `sprout watch` records instead
  int quit_grace_seconds = 10;    ///< after QMP quit, before SIGKILL
};

RunOutcome supervise(const Spec& spec, const SuperviseOptions& options);

}  // namespace sprout
