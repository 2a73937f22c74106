// What a VM's status record (STATE/status.json) says about the VM's current run, and
// whether a run exists at all. A record describes a live run while the process that
// keeps it (`sprout run`, or `sprout watch` for a VM someone else runs) is still the
// same process (pid and start time, process_identity.h), has not written "stopped",
// and, for a watcher, has the VM connected through the same status socket qemu made
// for this run (a run read through libvirt's API: connected, or reconnecting after its
// way to libvirt broke). Anything else is history: how it ended, never where the VM stands.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "spec/spec.h"
#include "status/record.h"

namespace sprout {

struct RunView {
  enum State { none, corrupt, live, ended } state = none;
  std::string how;            ///< ended: how, escaped for a terminal ("guest powered off", "its supervisor (pid 7) is gone")
  std::int64_t started_ms = 0;  ///< the run's start (host clock), 0 when unknown
  std::int64_t ended_ms = 0;    ///< ended: when, 0 when unknown
  bool connected = false;     ///< live: the guest's status channel is connected
};

/// Reads the record's host part. `spec` gives the status socket a watcher's record is
/// compared with.
RunView view_run(const Spec& spec, const RecordFile& file);

/// An identity of the status socket file as qemu made it for its run (device, inode,
/// change time); "" when there is none. A watcher that finds another one connected
/// knows that a new run began.
std::string channel_identity(const std::filesystem::path& socket);

/// Whether a record's channel identity is a libvirt domain's ("libvirt:UUID:ID",
/// runtime/channel_source.h) rather than a status socket's.
bool is_libvirt_channel(const std::string& identity);

}  // namespace sprout
