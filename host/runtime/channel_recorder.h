// The recording half of a VM's supervisor, which `sprout run` and `sprout watch`
// share: it opens the VM's status channel (channel_source.h: qemu's status socket, or
// libvirt's API for a libvirt domain) the moment it is there, and again, with backoff,
// whenever it goes away; feeds every byte that arrives to the status recorder (which
// bounds, rate-limits and escapes what the guest sends); and keeps the host part of
// the record (status/record.h): which process keeps it, where the run stands, how it
// ended. It never blocks: the supervisor's poll loop asks it for its descriptor and
// its next deadline, and calls it back; a read takes at most 256 KiB or 50 ms.
//
// For `sprout watch` (Mode::watch) it also tells runs apart: a watcher outlives the
// VM's runs. A channel that ended (its qemu exited) ends the run: the next one to
// connect is a new run, whose record starts afresh. A channel that was lost (libvirt
// restarted or could not be reached) does not: the record says "reconnecting" (still
// live for `status` and `wait`), and when the channel is back, the same run identity
// (channel_source.h) continues the record and another one starts a new record; if the
// domain is found not running, its run ended while the watcher could not see it. A
// restarted watcher continues the record of the run it finds still running.
// With `record` off (another process records) it does nothing at all.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/channel_source.h"
#include "spec/spec.h"
#include "status/status_recorder.h"
#include "status/status_store.h"

namespace sprout {

class ChannelRecorder {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Mode { run, watch };

  /// `source` null: qemu's status socket in the state directory.
  ChannelRecorder(const Spec& spec, Mode mode, bool record, std::shared_ptr<ChannelSource> source = nullptr);

  /// Starts the record: a new one (run), or continuing an earlier watcher's (watch).
  void open();
  /// The host part: where the run stands (and why, or how it ended), written at once.
  void set_state(HostState state, const std::string& how = "");
  /// qemu's pid, recorded with the next set_state (run).
  void set_qemu_pid(std::int64_t pid) { qemu_pid_ = pid; }
  /// The run ended (how, with the run's exit status): the final host part.
  void set_stopped(const std::string& how, int exit_status);
  /// An event of the host's own in events.jsonl, next to the guest's ("source": "host").
  void host_event(const char* kind, const std::string& message, nlohmann::json detail = nlohmann::json::object());

  /// Called once, at the channel's first connection.
  std::function<void()> on_first_connection;
  /// The recorder's hook for every accepted guest event.
  void on_event(std::function<void(const StatusEvent&)> f) { rec_.on_event = std::move(f); }

  /// Connects when the channel is there and it is time to try; flushes a coalesced write.
  void tick();
  /// The descriptor to poll for input, -1 while not connected.
  int fd() const { return connected_ ? source_->fd() : -1; }
  /// Reads what the channel has (after poll said so).
  void on_readable();
  /// Milliseconds until tick() has something to do (at most `cap`).
  int timeout_ms(int cap) const;
  /// Takes what is left in the channel and disconnects (the run is over).
  void close();

  bool recording() const { return record_; }
  bool connected() const { return connected_; }
  /// What it reads ("STATE/status.sock", "channel ... of domain ... at URI").
  std::string source_name() const { return source_->describe(); }
  /// Guest events accepted so far.
  std::uint64_t accepted() const { return rec_.counters().accepted; }

 private:
  void connected_now();
  /// The channel ended or was lost (read() said so).
  void gone(ChannelSource::Read how);
  /// Feeds what the channel has to the recorder (bounded); false when it ended or was lost.
  bool drain();
  HostPart host_part(HostState state, const std::string& how) const;

  const Spec& spec_;
  const Mode mode_;
  const bool record_;
  StatusStore store_;
  StatusRecorder rec_;
  const std::int64_t started_ms_;
  std::int64_t qemu_pid_ = 0;
  std::shared_ptr<ChannelSource> source_;
  bool connected_ = false;
  bool seen_ = false;         // connected at least once
  bool run_ended_ = false;    // watch: the last channel ended (its qemu exited): the next is a new run
  bool reconnecting_ = false; // watch: the last channel was lost; the run may go on
  bool said_waiting_ = false;
  std::chrono::milliseconds backoff_{10};
  Clock::time_point next_try_ = Clock::now();
  // watch: the run identity (channel_source.h) of the run being recorded, and the one
  // the record it resumed was made with.
  std::string channel_, resumed_channel_;
};

}  // namespace sprout
