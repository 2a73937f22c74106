// STATE/run.lock: held (an open file description lock, exclusive) by the one `sprout run` of a VM for the
// whole run, preparing included, so two runs of one VM cannot clash, and any other
// command can tell whether a run of the VM exists right now.
#pragma once

#include <sys/types.h>

#include <optional>

#include "spec/spec.h"

namespace sprout {

/// Whether the run records the VM's status channel itself, or leaves it to a
/// `sprout watch` (`sprout run --external-recorder`).
enum class Recorder { run, watcher };

/// Takes the VM's run lock (creating the state directory) and returns its fd; the lock
/// goes with the fd (close it, or exit). Throws std::runtime_error when another run
/// holds it. The file says who holds it and, for a run that leaves recording to a
/// watcher, "external-recorder".
int lock_run(const Spec& spec, Recorder recorder = Recorder::run);

/// Ends a run's hold: empties the file (a next run taking the lock at once must not
/// be read as this one, whose process may still be exiting), then closes it.
void unlock_run(int fd);

/// Whether some process holds the VM's run lock now.
bool run_lock_held(const Spec& spec);

/// The `sprout run` that holds the lock (it writes its pid and start time into the
/// file), when it is still that process.
std::optional<pid_t> run_lock_holder(const Spec& spec);

/// Who records the run that holds the lock now; nothing when no live run holds it.
std::optional<Recorder> run_lock_recorder(const Spec& spec);

}  // namespace sprout
