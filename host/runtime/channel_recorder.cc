#include "runtime/channel_recorder.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "base/poll_deadline.h"
#include "base/process_identity.h"
#include "base/unix_socket.h"
#include "status/run_state.h"

namespace sprout {

using nlohmann::json;
using std::chrono::milliseconds;

ChannelRecorder::ChannelRecorder(const Spec& spec, Mode mode, bool record)
    : spec_(spec), mode_(mode), record_(record), store_(spec.state_dir), rec_(spec.name, store_),
      started_ms_(unix_time_ms()) {}

void ChannelRecorder::open() {
  if (!record_) return;
  if (mode_ == Mode::run) {
    rec_.reset();
    return;
  }
  RecordFile old = read_record(spec_.status_file());
  if (old.state != RecordFile::ok) return;
  rec_.resume_from(old.record);
  resumed_channel_ = old.record.host.channel;
}

HostPart ChannelRecorder::host_part(HostState state, const std::string& how) const {
  HostPart h;
  h.state = state;
  h.started_ms = started_ms_;
  h.how = how;
  h.qemu_pid = qemu_pid_;
  h.watch = mode_ == Mode::watch;
  h.channel = channel_;
  return h;
}

void ChannelRecorder::set_state(HostState state, const std::string& how) {
  if (!record_) return;
  HostPart h = host_part(state, how);
  h.supervisor = ProcessIdentity::self();
  rec_.set_host(h);
}

void ChannelRecorder::set_stopped(const std::string& how, int exit_status) {
  if (!record_) return;
  rec_.flush();
  HostPart h = host_part(HostState::stopped, how);
  h.qemu_pid = 0;
  h.exit = exit_status;
  h.stopped_ms = unix_time_ms();
  rec_.set_host(h);  // (the channel stays: a restarted watcher knows the run by it)
}

void ChannelRecorder::host_event(const char* kind, const std::string& message, json detail) {
  if (!record_) return;
  json e{{"source", "host"}, {"event", kind}, {"vm", spec_.name}, {"message", message}, {"hostTimeMs", unix_time_ms()}};
  if (!detail.empty()) e["detail"] = std::move(detail);
  store_.append_event(e);
}

void ChannelRecorder::connected_now() {
  rec_.on_connect();
  spdlog::info("{}: status channel connected", spec_.name);
  backoff_ = milliseconds(10);
  said_waiting_ = false;
  if (mode_ == Mode::watch) {
    std::string id = channel_identity(spec_.status_socket());
    if (id != channel_) {
      if (!channel_.empty() || resumed_channel_.empty() || resumed_channel_ != id) {
        spdlog::info("{}: a new run of the VM (new status socket); starting a new record", spec_.name);
        rec_.reset();
        host_event("run-started", "a new run of the VM connected (new status socket)");
      }
      channel_ = id;
    }
    set_state(HostState::running);
  }
  if (seen_) return;
  seen_ = true;
  if (mode_ == Mode::run) set_state(HostState::running);
  if (on_first_connection) on_first_connection();
}

void ChannelRecorder::tick() {
  if (!record_) return;
  if (auto due = rec_.flush_due(); due && Clock::now() >= *due) rec_.flush();
  if (fd_ >= 0 || Clock::now() < next_try_) return;
  fd_ = connect_unix(spec_.status_socket());
  if (fd_ >= 0) {
    connected_now();
    return;
  }
  // (sprout run's qemu makes the socket at once: only a watcher says it waits.)
  if (mode_ == Mode::watch && !said_waiting_)
    spdlog::info("{}: waiting for {} ({})", spec_.name, spec_.status_socket().string(), std::strerror(errno));
  said_waiting_ = true;
  next_try_ = Clock::now() + backoff_;
  backoff_ = std::min(backoff_ * 2, milliseconds(500));
}

void ChannelRecorder::on_readable() {
  if (fd_ < 0 || drain_status_socket(rec_, fd_)) return;
  spdlog::info("{}: status channel closed; reconnecting", spec_.name);
  // For a watcher that is the end of the run (qemu closed its socket); inside
  // `sprout run` the run goes on until qemu exits.
  if (mode_ == Mode::watch) {
    set_state(HostState::waiting, "the VM's status channel closed (its qemu exited)");
    host_event("run-ended", "the VM's status channel closed (its qemu exited)");
  }
  next_try_ = Clock::now() + milliseconds(50);
}

int ChannelRecorder::timeout_ms(int cap) const {
  if (!record_) return cap;
  int t = cap;
  if (fd_ < 0) t = std::min(t, ms_until(next_try_));
  if (auto due = rec_.flush_due()) t = std::min(t, ms_until(*due));
  return t;
}

void ChannelRecorder::close() {
  if (fd_ < 0) return;
  drain_status_socket(rec_, fd_);
  if (fd_ < 0) return;
  rec_.on_disconnect();
  ::close(fd_);
  fd_ = -1;
}

}  // namespace sprout
