#include "runtime/channel_recorder.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "base/poll_deadline.h"
#include "base/process_identity.h"
#include "status/run_state.h"

namespace sprout {

using nlohmann::json;
using std::chrono::milliseconds;

ChannelRecorder::ChannelRecorder(const Spec& spec, Mode mode, bool record, std::shared_ptr<ChannelSource> source)
    : spec_(spec), mode_(mode), record_(record), store_(spec.state_dir), rec_(spec.name, store_),
      started_ms_(unix_time_ms()),
      source_(source ? std::move(source) : std::shared_ptr<ChannelSource>(unix_channel_source(spec.status_socket()))) {}

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
  connected_ = true;
  rec_.on_connect();
  spdlog::info("{}: status channel connected ({})", spec_.name, source_->describe());
  backoff_ = milliseconds(10);
  said_waiting_ = false;
  if (mode_ == Mode::watch) {
    const std::string id = source_->run_identity();
    bool new_run;
    if (run_ended_)
      new_run = true;  // the last run's channel ended before our eyes
    else if (!channel_.empty())
      new_run = id != channel_;  // back after a loss: the same run if the same identity
    else
      new_run = resumed_channel_.empty() || resumed_channel_ != id;  // a restarted watcher's first connection
    if (new_run) {
      spdlog::info("{}: a new run of the VM; starting a new record", spec_.name);
      rec_.reset();
      host_event("run-started", "a new run of the VM connected (" + source_->describe() + ")");
    } else if (reconnecting_) {
      spdlog::info("{}: the same run of the VM; its record goes on", spec_.name);
      host_event("channel-back", "the status channel is back; the same run of the VM goes on");
    }
    channel_ = id;
    run_ended_ = reconnecting_ = false;
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
  if (connected_ || Clock::now() < next_try_) return;
  const ChannelSource::Opened o = source_->open();
  if (o.kind == ChannelSource::Opened::open) {
    connected_now();
    return;
  }
  if (mode_ == Mode::watch && reconnecting_ && o.kind == ChannelSource::Opened::not_running) {
    // Lost, and now there is no run: it ended while the watcher could not see it.
    reconnecting_ = false;
    run_ended_ = true;
    const std::string how = "the VM stopped while its status channel was out of reach (" + o.why + ")";
    spdlog::info("{}: {}", spec_.name, how);
    set_state(HostState::waiting, how);
    host_event("run-ended", how);
    said_waiting_ = false;
  }
  // (sprout run's qemu makes the socket at once: only a watcher says it waits.)
  if (mode_ == Mode::watch && !said_waiting_)
    spdlog::info("{}: waiting for {} ({})", spec_.name, source_->describe(), o.why);
  said_waiting_ = true;
  next_try_ = Clock::now() + backoff_;
  backoff_ = std::min(backoff_ * 2, source_->max_backoff());
}

void ChannelRecorder::gone(ChannelSource::Read how) {
  connected_ = false;
  rec_.on_disconnect();
  const std::string why = source_->why();
  next_try_ = Clock::now() + milliseconds(50);
  backoff_ = milliseconds(100);
  said_waiting_ = false;
  if (how == ChannelSource::Read::lost) {
    // The way to the channel broke, not (as far as we know) the run.
    spdlog::warn("{}: {}; reconnecting", spec_.name, why);
    if (mode_ == Mode::watch) {
      reconnecting_ = true;
      set_state(HostState::reconnecting, why + "; reconnecting");
      host_event("channel-lost", why + "; reconnecting");
    }
    return;
  }
  spdlog::info("{}: {}; {}", spec_.name, why, mode_ == Mode::watch ? "waiting for the next run" : "reconnecting");
  // For a watcher that is the end of the run (qemu closed its socket); inside
  // `sprout run` the run goes on until qemu exits.
  if (mode_ == Mode::watch) {
    run_ended_ = true;
    reconnecting_ = false;
    set_state(HostState::waiting, "the VM's status channel closed (its qemu exited)");
    host_event("run-ended", "the VM's status channel closed (its qemu exited)");
  }
}

bool ChannelRecorder::drain() {
  std::string data;
  const auto until = Clock::now() + milliseconds(50);
  for (std::size_t taken = 0; taken < (256u << 10) && Clock::now() < until;) {
    data.clear();
    const ChannelSource::Read r = source_->read(data, 65536);
    if (r == ChannelSource::Read::data) {
      taken += data.size();
      rec_.on_data(data);
      continue;
    }
    if (r == ChannelSource::Read::again) return true;
    gone(r);
    return false;
  }
  return true;  // more may be there: the source's descriptor stays readable
}

void ChannelRecorder::on_readable() {
  if (connected_) drain();
}

int ChannelRecorder::timeout_ms(int cap) const {
  if (!record_) return cap;
  int t = cap;
  if (!connected_) t = std::min(t, ms_until(next_try_));
  if (auto due = rec_.flush_due()) t = std::min(t, ms_until(*due));
  return t;
}

void ChannelRecorder::close() {
  if (!connected_) return;
  if (!drain()) return;  // (it ended meanwhile: recorded as such)
  rec_.on_disconnect();
  source_->close();
  connected_ = false;
}

}  // namespace sprout
