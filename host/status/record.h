// The status record (STATE/status.json) as one type: what the recorder keeps, what
// `status`, `wait`, `logs` and the supervisor read. This unit is the only one that
// turns it into JSON and back; docs/protocol.md documents every field.
//
// Reading never throws and never trusts the file: a missing one reads as
// RecordFile::missing, one that is not a record sprout wrote as corrupt (with why),
// and a field that is missing or of the wrong type as its empty value. Strings the
// guest chose are kept as it sent them (bounded on the way in): escape them
// (base/terminal_text.h) before a terminal sees them; for_display() does it for all.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/process_identity.h"
#include "status_protocol.h"

namespace sprout {

/// The recorder's counts of what came through the channel.
struct RecorderCounters {
  std::uint64_t lines = 0;        ///< complete lines seen
  std::uint64_t accepted = 0;     ///< valid events
  std::uint64_t garbage = 0;      ///< lines the decoder rejected (not UTF-8 problems)
  std::uint64_t invalid_utf8 = 0;
  std::uint64_t overlong = 0;     ///< lines over kMaxStatusLineBytes
  std::uint64_t wrong_vm = 0;     ///< valid events naming another VM (recorded, flagged, no phase change)
  std::uint64_t seq_gaps = 0;     ///< events the guest numbered but that never arrived
  std::uint64_t thinned = 0;      ///< log lines not written to events.jsonl (flood)
  std::uint64_t connections = 0;

  nlohmann::json to_json() const;
  static RecorderCounters from_json(const nlohmann::json& j);
};

/// Where the host stands with the VM's run ("host" in status.json).
enum class HostState { none, preparing, starting, running, waiting, reconnecting, stopping, stopped };
std::string_view name_of(HostState s);

struct HostPart {
  HostState state = HostState::none;
  std::optional<ProcessIdentity> supervisor;  ///< the process that keeps the record
  std::int64_t qemu_pid = 0;                  ///< `sprout run`'s qemu, 0 when none
  bool watch = false;                         ///< `sprout watch` keeps the record
  std::string channel;                        ///< watch: the run's identity (runtime/channel_source.h)
  std::int64_t started_ms = 0, stopped_ms = 0;
  std::string how;                            ///< how the run ended (or why it waits)
  std::optional<int> exit;                    ///< stopped: the run's exit status

  nlohmann::json to_json() const;
  static HostPart from_json(const nlohmann::json& j);
};

/// The system the guest reported running, and who built it ("host" or "guest").
struct GuestSystem {
  std::string path;
  std::string by;
};

struct StatusRecord {
  std::string vm;
  std::optional<Phase> phase;          ///< none before the guest's first event
  std::int64_t since_ms = 0, updated_ms = 0;
  std::string generation;
  std::string message;
  std::string boot_id;
  std::uint64_t seq = 0;
  std::optional<std::int64_t> guest_time_ms;
  nlohmann::json detail;               ///< the last phase event's detail: object or null
  std::vector<std::string> last_log;   ///< the last log lines (rebuild output)
  std::vector<Phase> reached;          ///< every phase this run reached, once, in order
  std::optional<GuestSystem> system;
  std::string pending_generation;      ///< "" when none
  RecorderCounters counters;
  HostPart host;

  /// "" before the first event.
  std::string phase_name() const;
  /// The newest thing the guest said: its message, or while rebuilding the last log line.
  std::string newest_message() const;
  /// Whether the run reached `phase` or went past it towards `specialized` ("started":
  /// the guest's channel connected or an event arrived; any other name a phase of
  /// status_protocol.h; `failed` only when it failed).
  bool reached_phase(std::string_view phase) const;
  /// A copy whose every string is escaped for a terminal.
  StatusRecord for_display() const;

  nlohmann::json to_json() const;
  static StatusRecord from_json(const nlohmann::json& j);
};

/// status.json as read from disk.
struct RecordFile {
  enum State { missing, corrupt, ok } state = missing;
  std::string corrupt_why;  ///< corrupt: why, naming the file
  StatusRecord record;      ///< ok: the record

  /// What `status --json` shows under "status": null, {"corrupt": WHY} or the record.
  nlohmann::json to_json() const;
};

RecordFile read_record(const std::filesystem::path& status_json);

/// Field readers for JSON that holds what a guest chose (events.jsonl's lines, rows
/// made from a record): strings escaped for a terminal, a missing or mistyped field
/// read as "" or 0.
std::string record_text(const nlohmann::json& j, const char* key);
std::int64_t record_int(const nlohmann::json& j, const char* key);

}  // namespace sprout
