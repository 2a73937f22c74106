// Where the status recorder keeps what it learned about a VM, in its state
// directory: status.json (the latest state, replaced atomically) and events.jsonl
// (every accepted event, one JSON object per line, append-only; when it passes
// max_events_bytes it is renamed to events.jsonl.1, replacing an older one, so the
// two files together stay under twice that size).
#pragma once

#include "spec/state_dir.h"
#include "status/record.h"

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace sprout {

struct StatusStoreOptions {
  std::uint64_t max_events_bytes = 1 << 20;
};

class StatusStore {
 public:
  StatusStore(std::filesystem::path state_dir, StatusStoreOptions options = {});
  ~StatusStore();
  StatusStore(const StatusStore&) = delete;
  StatusStore& operator=(const StatusStore&) = delete;

  /// Replaces status.json. Throws std::system_error.
  void write_status(const StatusRecord& record);
  /// Appends one line to events.jsonl (rotating first when it is full). Failures are
  /// logged and counted, never thrown: losing history must not stop recording.
  void append_event(const nlohmann::json& event);

  std::filesystem::path status_path() const { return StateDir{dir_}.status(); }
  std::filesystem::path events_path() const { return StateDir{dir_}.events(); }
  std::uint64_t rotations() const { return rotations_; }
  std::uint64_t write_failures() const { return write_failures_; }

 private:
  void open_events();
  std::filesystem::path dir_;
  StatusStoreOptions options_;
  int events_fd_ = -1;
  std::uint64_t events_size_ = 0;
  std::uint64_t rotations_ = 0;
  std::uint64_t write_failures_ = 0;
};

}  // namespace sprout
