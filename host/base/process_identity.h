// Which process a recorded pid is: a pid with the time it started (in clock ticks
// since boot, /proc/PID/stat field 22), so that a pid the kernel reused for another
// process is never taken for the one recorded.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>

#include <nlohmann/json.hpp>

namespace sprout {

/// The start time of `pid`, or nothing when there is no such process (or /proc cannot
/// say).
std::optional<std::uint64_t> process_start_ticks(pid_t pid);

/// A process as a record names it: its pid and, when /proc said, its start time.
struct ProcessIdentity {
  std::int64_t pid = 0;
  std::optional<std::uint64_t> start_ticks;

  static ProcessIdentity self();
  /// Whether this very process still runs (a pid reused by another one: false; /proc
  /// unreadable for it (hidepid): the live pid is taken for it).
  bool alive() const;
};

/// {"supervisor": PID, "supervisorStart": TICKS} for this process, for status.json.
nlohmann::json this_process_identity();

/// Whether the process a record names ("supervisor" and, when recorded,
/// "supervisorStart" in `host`) still runs. A record without a supervisor: false.
bool recorded_process_alive(const nlohmann::json& host);

}  // namespace sprout
