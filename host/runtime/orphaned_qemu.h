// A qemu that outlived its `sprout run`: qemu loses its parent-death signal when it
// switches user, so a run that was SIGKILLed outside systemd leaves its qemu running
// the guest, holding the overlay and nobody recording it. The next run of that VM,
// holding the run lock, ends it before it prepares anything: the record names the
// qemu's pid and the run that supervised it; only a process whose supervisor is gone
// and whose command line names this VM's QMP socket is taken for it.
#pragma once

#include "spec/spec.h"

namespace sprout {

/// Kills (SIGKILL) and waits up to 10 s for the orphaned qemu of `spec`, if any;
/// true when there was one. std::runtime_error when it would not die.
bool end_orphaned_qemu(const Spec& spec);

}  // namespace sprout
