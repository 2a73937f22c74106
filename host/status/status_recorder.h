// The status recorder's core: bytes from a VM's status channel in, status.json and
// events.jsonl out (through a StatusStore). It splits lines with the common splitter
// (line_splitter.h; a line over 4 KiB is dropped whole and counted), decodes each with the common
// decoder, and counts and logs (rate-limited) garbage, invalid UTF-8 and over-long
// lines. A flood of `log` lines is thinned by a token bucket before it reaches
// events.jsonl; phase changes are never dropped. status.json is rewritten at once
// for an outcome (specialized, failed) and at most every `coalesce` otherwise
// (flush_due()); per-event warnings are rate-limited and escaped for terminals.
// No I/O on sockets here: the channel recorder (runtime/channel_recorder.h) feeds it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "line_splitter.h"
#include "status_protocol.h"
#include "status/record.h"
#include "status/status_store.h"

namespace sprout {

struct RecorderOptions {
  std::chrono::milliseconds coalesce{100};
  double log_lines_per_second = 200;  ///< token bucket refill for events.jsonl log lines
  double log_burst = 1000;            ///< bucket size
  std::size_t last_log_lines = 10;    ///< kept in status.json
};

class StatusRecorder {
 public:
  using Clock = std::chrono::steady_clock;

  StatusRecorder(std::string vm, StatusStore& store, RecorderOptions options = {});

  /// Starts a fresh record ("no event yet in this run"), keeping nothing from an old
  /// status.json. Used by `sprout run` when it starts qemu.
  void reset();
  /// Continues from an existing record (phase, generation, what the guest runs), so a
  /// restarted `sprout watch` does not forget what it knew.
  void resume_from(const StatusRecord& old);

  void on_connect();
  void on_data(std::string_view bytes);
  /// The connection ended: a partial line is dropped (and counted as garbage).
  void on_disconnect();

  /// The host's side of the run ("host" in status.json), written at once.
  void set_host(const HostPart& host);

  /// When a coalesced write is pending: the time it is due.
  std::optional<Clock::time_point> flush_due() const;
  /// Writes status.json if something changed since the last write.
  void flush();

  /// Called for every accepted event (after it is recorded).
  std::function<void(const StatusEvent&)> on_event;

  const RecorderCounters& counters() const { return counters_; }
  const StatusRecord& record() const { return record_; }

 private:
  void handle_line(std::string_view line);
  /// An event that names another VM: recorded and flagged, but no progress of this one.
  void accept_foreign(const StatusEvent& e, nlohmann::json ev);
  /// Counts (and warns of) the events of this boot that never arrived.
  void track_sequence(const StatusEvent& e);
  void apply_log(const StatusEvent& e);
  void apply_phase(const StatusEvent& e);
  void reject(const char* kind, std::uint64_t& counter, std::string_view why);
  /// status.json to be written within `coalesce`.
  void schedule_write();
  void write_now();
  void record_system(const StatusEvent& e);
  bool take_token();

  std::string vm_;
  StatusStore& store_;
  RecorderOptions options_;
  RecorderCounters counters_;
  StatusRecord record_;
  std::string last_boot_id_;   ///< for seq gap detection
  std::uint64_t last_seq_ = 0;
  std::uint64_t gap_warnings_ = 0;
  LineSplitter lines_;  ///< over-long lines dropped (and counted)
  bool dirty_ = false;
  std::optional<Clock::time_point> pending_;
  double tokens_;
  Clock::time_point last_refill_;
};

/// Unix time in milliseconds (host clock).
std::int64_t unix_time_ms();

}  // namespace sprout
