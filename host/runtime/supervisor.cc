#include "runtime/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <optional>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "runtime/console_log.h"
#include "runtime/guest_event_log.h"
#include "runtime/notify.h"
#include "base/process_identity.h"
#include "runtime/qmp_client.h"
#include "status/run_state.h"
#include "status_protocol.h"
#include "status/status_recorder.h"
#include "status/status_store.h"
#include "subprocess.h"
#include "base/terminal_text.h"
#include "base/unix_socket.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

int ms_until(Clock::time_point t) {
  auto d = std::chrono::duration_cast<milliseconds>(t - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(d, 0, 60'000));
}

}  // namespace

namespace {

// One VM's loop, for both jobs: with a qemu command line it starts qemu and stays
// with it (QMP, the shutdown sequence, the exit status); without one somebody else
// runs the VM and the loop only records (until a signal). Either way it records the
// status channel (unless told another process does), keeps the host part of the
// record (whose pid the supervisor is, and how it ended) and tells systemd.
class Loop {
 public:
  Loop(const Spec& spec, const SuperviseOptions& options)
      : spec_(spec), opt_(options), owns_qemu_(!options.argv.empty()), store_(spec.state_dir),
        rec_(spec.name, store_), console_(spec.console_log()) {}

  RunOutcome run();

 private:
  void set_host(HostState state, const std::string& how = "");
  /// An event of the host's own in events.jsonl, next to the guest's ("source": "host").
  void host_event(const char* kind, const std::string& message, json detail = json::object());
  fs::path qemu_log_path() const { return spec_.state().qemu_log(); }
  std::vector<std::string> qemu_log_tail(std::size_t lines) const;
  bool resumed_channel_matches(const std::string& id) const { return !resumed_channel_.empty() && resumed_channel_ == id; }
  void connect_status();
  void status_connected();
  void start_qmp();
  void qmp_lost();
  void qmp_ready();
  void qmp_events(short revents);
  void on_signal(int signo);
  void request_shutdown();
  void send_quit();
  void child_exited(int wstatus);
  bool ended() const { return owns_qemu_ ? child_done_ : stop_requested_; }
  int poll_timeout() const;
  RunOutcome finish();
  void open_record();        // a new record (run) or the one an earlier watcher kept
  void start_qemu();         // qemu.log, spawn, the qemu-started event
  void check_deadlines();    // connect, QMP, the shutdown sequence's deadlines, flushes
  void wait_and_dispatch();  // one poll over the signalfd, the status channel and QMP

  const Spec& spec_;
  const SuperviseOptions& opt_;
  const bool owns_qemu_;
  StatusStore store_;
  StatusRecorder rec_;
  ConsoleLogCap console_;
  const std::int64_t started_ms_ = unix_time_ms();
  sigset_t old_mask_{};
  int sfd_ = -1;
  pid_t pid_ = -1;
  bool ready_sent_ = false;  // READY=1 once, when `ready` is "started"
  // watch: the status socket (channel_identity) of the run being recorded, and the one
  // the record it resumed was made with.
  std::string channel_, resumed_channel_;

  // The status channel: connected as soon as the socket is there, again whenever it
  // goes away (reboots inside qemu keep it; a restarted qemu or libvirt domain do not).
  int status_fd_ = -1;
  bool status_seen_ = false;  // connected at least once
  std::uint64_t accepted_at_start_ = 0;  // the recorder's accepted lines when qemu started
  bool said_waiting_ = false;
  milliseconds status_backoff_{10};
  Clock::time_point next_status_try_ = Clock::now();

  // QMP (owned qemu only): started once the status channel is there, driven by poll.
  QmpClient qmp_;
  bool qmp_up_ = false;  // a connection was started and has not been seen ending yet
  Clock::time_point next_qmp_try_ = Clock::now();

  // Shutdown: power button, quit after the spec's timeout, SIGKILL after the grace.
  bool stop_requested_ = false;  // watch: a signal ends the loop
  std::string stop_signal_;
  bool shutdown_requested_ = false, powerdown_sent_ = false, quit_sent_ = false, killed_ = false, forced_ = false;
  bool quit_by_qmp_ = false;  // quit went to QMP (SIGTERM instead if it cannot be written)
  Clock::time_point powerdown_deadline_{}, kill_deadline_{};
  bool child_done_ = false;
  int wstatus_ = 0;
};

void Loop::set_host(HostState state, const std::string& how) {
  if (!opt_.record) return;
  HostPart h;
  h.state = state;
  h.supervisor = ProcessIdentity::self();
  h.started_ms = started_ms_;
  h.how = how;
  if (owns_qemu_ && pid_ > 0) h.qemu_pid = pid_;
  h.watch = !owns_qemu_;
  h.channel = channel_;
  rec_.set_host(h);
}

void Loop::host_event(const char* kind, const std::string& message, json detail) {
  if (!opt_.record) return;
  json e{{"source", "host"}, {"event", kind}, {"vm", spec_.name}, {"message", message}, {"hostTimeMs", unix_time_ms()}};
  if (!detail.empty()) e["detail"] = std::move(detail);
  store_.append_event(e);
}

std::vector<std::string> Loop::qemu_log_tail(std::size_t lines) const {
  std::ifstream in(qemu_log_path());
  std::deque<std::string> tail;
  std::string line;
  std::size_t bytes = 0;
  while (std::getline(in, line) && bytes < (4u << 20)) {
    bytes += line.size();
    tail.push_back(utf8_truncate(line, 512));
    if (tail.size() > lines) tail.pop_front();
  }
  return {tail.begin(), tail.end()};
}

void Loop::status_connected() {
  rec_.on_connect();
  spdlog::info("{}: status channel connected", spec_.name);
  status_backoff_ = milliseconds(10);
  said_waiting_ = false;
  if (!owns_qemu_) {
    // A watcher outlives runs: another status socket than the one the record was
    // made with is another run of the VM (qemu makes it anew at each start), whose
    // record starts afresh; the same socket is the same run (the watcher restarted).
    std::string id = channel_identity(spec_.status_socket());
    if (id != channel_) {
      if (!channel_.empty() || !resumed_channel_matches(id)) {
        spdlog::info("{}: a new run of the VM (new status socket); starting a new record", spec_.name);
        rec_.reset();
        host_event("run-started", "a new run of the VM connected (new status socket)");
      }
      channel_ = id;
    }
    set_host(HostState::running);
  }
  if (status_seen_) return;
  status_seen_ = true;
  if (owns_qemu_) set_host(HostState::running);
  if (!ready_sent_ && spec_.ready == Ready::started) {
    notify_ready("status channel connected");
    ready_sent_ = true;
  }
}

void Loop::connect_status() {
  if (!opt_.record || status_fd_ >= 0 || Clock::now() < next_status_try_) return;
  status_fd_ = connect_unix(spec_.status_socket());
  if (status_fd_ >= 0) {
    status_connected();
    return;
  }
  // (sprout run's qemu makes the socket at once: only a watcher says it waits.)
  if (!owns_qemu_ && !said_waiting_)
    spdlog::info("{}: waiting for {} ({})", spec_.name, spec_.status_socket().string(), std::strerror(errno));
  said_waiting_ = true;
  next_status_try_ = Clock::now() + status_backoff_;
  status_backoff_ = std::min(status_backoff_ * 2, milliseconds(500));
}

void Loop::start_qmp() {
  if (!owns_qemu_ || qmp_.active() || (opt_.record && status_fd_ < 0) || Clock::now() < next_qmp_try_) return;
  std::string err;
  if (qmp_.start(spec_.qmp_socket(), milliseconds(2000), &err))
    qmp_up_ = true;
  else
    next_qmp_try_ = Clock::now() + milliseconds(100);
}

// The QMP connection ended (qemu closed it, or it missed a deadline).
void Loop::qmp_lost() {
  qmp_up_ = false;
  spdlog::debug("{}: QMP: {}", spec_.name, qmp_.lost());
  // Once negotiated, a connection ends because qemu is going away: no new one.
  next_qmp_try_ = Clock::now() + (qmp_.lost_after_ready() ? milliseconds(std::chrono::hours(24)) : milliseconds(100));
  if (quit_by_qmp_ && qmp_.lost_unsent() && !child_done_) ::kill(pid_, SIGTERM);
  quit_by_qmp_ = false;
}

// The QMP handshake is done: a power-down asked for before goes out now.
void Loop::qmp_ready() {
  if (shutdown_requested_ && !powerdown_sent_ && !quit_sent_) {
    powerdown_sent_ = qmp_.send("system_powerdown");
    if (powerdown_sent_) spdlog::info("{}: asked the guest to power down", spec_.name);
  }
}

void Loop::qmp_events(short revents) {
  const bool was_ready = qmp_.ready();
  for (const auto& m : qmp_.handle(revents)) {
    if (!m.contains("event")) continue;
    std::string ev = m["event"].is_string() ? m["event"].get<std::string>() : "";
    if (ev == "RESET") spdlog::info("{}: guest reset (reboot in place)", spec_.name);
    else if (ev == "SHUTDOWN") spdlog::info("{}: guest shut down", spec_.name);
    else if (ev == "POWERDOWN") spdlog::debug("{}: power button pressed", spec_.name);
  }
  if (!was_ready && qmp_.ready()) qmp_ready();
}

void Loop::send_quit() {
  quit_sent_ = true;
  kill_deadline_ = Clock::now() + std::chrono::seconds(opt_.quit_grace_seconds);
  quit_by_qmp_ = qmp_.send("quit");
  if (!quit_by_qmp_) ::kill(pid_, SIGTERM);  // qemu quits on SIGTERM too
}

void Loop::request_shutdown() {
  shutdown_requested_ = true;
  host_event("stop-requested", fmt::format("asked to stop: power button, then quit after {} s",
                                           spec_.shutdown_timeout_seconds));
  notify_stopping();
  powerdown_deadline_ = Clock::now() + std::chrono::seconds(spec_.shutdown_timeout_seconds);
  set_host(HostState::stopping);
  if (qmp_.send("system_powerdown")) {
    powerdown_sent_ = true;
    spdlog::info("{}: asked the guest to power down (up to {} s)", spec_.name, spec_.shutdown_timeout_seconds);
  }
}

void Loop::on_signal(int signo) {
  if (signo == SIGCHLD) {
    int ws = 0;
    pid_t w = ::waitpid(pid_, &ws, WNOHANG);
    if (w == pid_) child_exited(ws);
    if (w < 0 && errno == ECHILD) {  // reaped by somebody else: status unknown
      spdlog::warn("{}: qemu's exit status was lost (was SIGCHLD ignored?)", spec_.name);
      child_exited(0xff00);  // "exited with status 255"
    }
  } else if (!owns_qemu_) {
    spdlog::info("{}: {} received; stopping the recorder", spec_.name, strsignal(signo));
    notify_stopping();
    stop_requested_ = true;
    stop_signal_ = sigabbrev_np(signo) ? std::string("SIG") + sigabbrev_np(signo) : strsignal(signo);
  } else if (!shutdown_requested_) {
    spdlog::info("{}: {} received; shutting the VM down", spec_.name, strsignal(signo));
    request_shutdown();
  } else if (!quit_sent_) {
    spdlog::warn("{}: second {}; quitting qemu now", spec_.name, strsignal(signo));
    forced_ = true;
    send_quit();
  }
}

void Loop::child_exited(int wstatus) {
  child_done_ = true;
  wstatus_ = wstatus;
}

int Loop::poll_timeout() const {
  int timeout = 60'000;
  if (owns_qemu_) timeout = std::min(timeout, ms_until(console_.next_check()));
  if (opt_.record && status_fd_ < 0) timeout = std::min(timeout, ms_until(next_status_try_));
  if (owns_qemu_ && !qmp_.active() && (status_fd_ >= 0 || !opt_.record))
    timeout = std::min(timeout, ms_until(next_qmp_try_));
  if (auto due = qmp_.deadline()) timeout = std::min(timeout, ms_until(*due));
  if (auto due = rec_.flush_due()) timeout = std::min(timeout, ms_until(*due));
  if (shutdown_requested_ && !quit_sent_) timeout = std::min(timeout, ms_until(powerdown_deadline_));
  if (quit_sent_ && !killed_) timeout = std::min(timeout, ms_until(kill_deadline_));
  return timeout;
}

void Loop::open_record() {
  if (opt_.record) {
    // sprout run starts a new record; a watcher continues what an earlier one knew.
    if (owns_qemu_)
      rec_.reset();
    else {
      RecordFile old = read_record(spec_.status_file());
      if (old.state == RecordFile::ok) {
        rec_.resume_from(old.record);
        resumed_channel_ = old.record.host.channel;
      }
    }
  }
}

void Loop::start_qemu() {
  set_host(HostState::starting);
  std::error_code ec;
  fs::remove(spec_.status_socket(), ec);
  fs::remove(spec_.qmp_socket(), ec);
  spdlog::info("{}: starting {}", spec_.name, format_command(opt_.argv));
  // qemu's stderr goes to STATE/qemu.log (this run's only); what it said is shown
  // when it fails, and kept with the host's events.
  int err_fd = ::open(qemu_log_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (err_fd < 0) spdlog::warn("{}: cannot write {}: {}", spec_.name, qemu_log_path().string(), std::strerror(errno));
  accepted_at_start_ = rec_.counters().accepted;
  SpawnOptions qemu;
  qemu.argv = opt_.argv;
  qemu.stderr_fd = err_fd;  // qemu's own messages, kept in the state directory
  // Not the signalfd's signals: qemu gets SIGTERM, SIGINT, SIGHUP and SIGCHLD as usual.
  // (In its own process group: a Ctrl-C on the terminal reaches run, which powers
  // down gracefully.)
  qemu.signal_mask = old_mask_;
  Child child = spawn(qemu);
  if (child) {
    pid_ = child.pid;
    host_event("qemu-started", fmt::format("qemu started (pid {})", pid_), {{"pid", pid_}});
    notify_status("qemu started; waiting for the guest");
  } else {
    // qemu never ran: why takes the place of its last words in STATE/qemu.log, and
    // finish() tells it as a qemu that failed before the guest started (exit 127, as
    // a shell says of a program it cannot run).
    std::string why = fmt::format("sprout run: cannot start {}\n", child.error);
    if (err_fd < 0 || ::write(err_fd, why.data(), why.size()) < 0)
      spdlog::error("{}: cannot start {}", spec_.name, child.error);
    child_exited(W_EXITCODE(127, 0));
  }
  if (err_fd >= 0) ::close(err_fd);
}

void Loop::check_deadlines() {
  connect_status();
  start_qmp();
  qmp_.expire(Clock::now());
  if (qmp_up_ && !qmp_.active()) qmp_lost();
  if (shutdown_requested_ && !quit_sent_ && Clock::now() >= powerdown_deadline_) {
    spdlog::warn("{}: the guest did not power off within {} s; quitting qemu", spec_.name,
                 spec_.shutdown_timeout_seconds);
    forced_ = true;
    send_quit();
  }
  if (quit_sent_ && !killed_ && Clock::now() >= kill_deadline_) {
    spdlog::warn("{}: qemu still running {} s after quit; killing it", spec_.name, opt_.quit_grace_seconds);
    ::kill(pid_, SIGKILL);
    killed_ = true;
  }
  if (auto due = rec_.flush_due(); due && Clock::now() >= *due) rec_.flush();
  if (owns_qemu_) console_.tick();

}

void Loop::wait_and_dispatch() {
  // Sleep until something happens or the next deadline.
  pollfd fds[3];
  int n = 0;
  fds[n++] = {sfd_, POLLIN, 0};
  int status_idx = -1, qmp_idx = -1;
  if (status_fd_ >= 0) {
    status_idx = n;
    fds[n++] = {status_fd_, POLLIN, 0};
  }
  if (qmp_.active()) {
    qmp_idx = n;
    fds[n++] = {qmp_.fd(), qmp_.poll_events(), 0};
  }
  int r = ::poll(fds, n, poll_timeout());
  if (r < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
  if (r <= 0) return;

  if (fds[0].revents & POLLIN) {
    signalfd_siginfo si{};
    while (!ended() && ::read(sfd_, &si, sizeof(si)) == sizeof(si)) on_signal(static_cast<int>(si.ssi_signo));
  }
  if (status_idx >= 0 && (fds[status_idx].revents & (POLLIN | POLLHUP | POLLERR)) &&
      !drain_status_socket(rec_, status_fd_)) {
    spdlog::info("{}: status channel closed; reconnecting", spec_.name);
    // For a watcher that is the end of the run (qemu closed its socket); inside
    // `sprout run` the run goes on until qemu exits.
    if (!owns_qemu_) {
      set_host(HostState::waiting, "the VM's status channel closed (its qemu exited)");
      host_event("run-ended", "the VM's status channel closed (its qemu exited)");
    }
    next_status_try_ = Clock::now() + milliseconds(50);
  }
  if (qmp_idx >= 0 && fds[qmp_idx].revents != 0 && qmp_.active()) qmp_events(fds[qmp_idx].revents);
  if (qmp_up_ && !qmp_.active()) qmp_lost();  // ended in handle() or in a send
}

RunOutcome Loop::run() {
  open_record();
  // READY=1 once the guest is specialized (or has failed, so that a unit does not
  // time out into a restart loop); or, when `ready` is "started", at the status
  // channel's first connection (at once when another process records).
  rec_.on_event = GuestEventLog(spec_.name, spec_.ready == Ready::specialized);
  sfd_ = make_signal_fd(owns_qemu_, &old_mask_);
  if (owns_qemu_) {
    start_qemu();
  } else {
    set_host(HostState::waiting, "no VM is connected yet");
    spdlog::info("{}: recording {}", spec_.name, spec_.status_socket().string());
  }
  if (!opt_.record && !ready_sent_ && spec_.ready == Ready::started) {
    notify_ready("qemu started");
    ready_sent_ = true;
  }
  while (!ended()) {
    check_deadlines();
    wait_and_dispatch();
  }
  return finish();
}

RunOutcome Loop::finish() {
  // qemu is gone (or the watcher stops): take what is left in the status channel.
  if (status_fd_ >= 0) {
    drain_status_socket(rec_, status_fd_);
    if (status_fd_ >= 0) {
      rec_.on_disconnect();
      ::close(status_fd_);
    }
  }
  qmp_.close();
  ::close(sfd_);
  ::sigprocmask(SIG_SETMASK, &old_mask_, nullptr);

  RunOutcome outcome;
  std::string how;
  if (!owns_qemu_) {
    outcome = RunOutcome::recorder_stopped;
    how = fmt::format("sprout watch stopped on {}", stop_signal_);
  } else if (WIFSIGNALED(wstatus_)) {
    outcome = RunOutcome::killed;
    const int sig = WTERMSIG(wstatus_);
    how = fmt::format("qemu killed by signal {}{}{}", sig, sigabbrev_np(sig) ? fmt::format(" (SIG{})", sigabbrev_np(sig)) : "",
                      killed_ ? " after quit timed out" : "");
  } else if (forced_) {
    outcome = RunOutcome::quit_after_timeout;
    how = fmt::format("guest ignored power-down for {} s; qemu quit", spec_.shutdown_timeout_seconds);
  } else if (WEXITSTATUS(wstatus_) == 0) {
    outcome = RunOutcome::powered_off;
    how = shutdown_requested_ ? "guest powered off on request" : "guest powered off";
  } else {
    outcome = RunOutcome::failed;
    how = fmt::format("qemu exited with status {}", WEXITSTATUS(wstatus_));
  }
  json exited{{"exit", static_cast<int>(outcome)}};
  std::vector<std::string> tail;
  if (outcome == RunOutcome::powered_off || !owns_qemu_) {
    spdlog::info("{}: {}", spec_.name, how);
  } else {
    // What qemu said about it (STATE/qemu.log), escaped: it may quote guest input.
    tail = qemu_log_tail(20);
    exited["qemuStderr"] = tail;
    // qemu that dies before the guest said a word (a KVM that cannot run it, a bad
    // option): its last words and the spec key to change go into `how`, which status,
    // wait and logs show.
    if (!killed_ && !forced_ && rec_.counters().accepted == accepted_at_start_) {
      how += " before the guest started";
      if (!tail.empty()) how += fmt::format("; qemu said: {}", utf8_truncate(tail.back(), 300));
      how += fmt::format(" (all of it: {})", qemu_log_path().string());
      if (!opt_.accel_hint.empty()) how += "; " + opt_.accel_hint;
    }
    spdlog::error("{}: {}", spec_.name, for_terminal(how));
    for (const auto& l : tail) spdlog::error("{}: qemu: {}", spec_.name, for_terminal(l));
  }
  if (owns_qemu_) host_event("qemu-exited", how, exited);
  else host_event("recorder-stopped", how);
  if (opt_.record) {
    rec_.flush();
    HostPart h;
    h.state = HostState::stopped;
    h.how = how;
    h.exit = static_cast<int>(outcome);
    h.started_ms = started_ms_;
    h.stopped_ms = unix_time_ms();
    h.watch = !owns_qemu_;
    h.channel = channel_;  // a restarted watcher knows the run by it
    rec_.set_host(h);
  }
  notify_status(how);
  return outcome;
}

}  // namespace

RunOutcome supervise(const Spec& spec, const SuperviseOptions& options) { return Loop(spec, options).run(); }

}  // namespace sprout
