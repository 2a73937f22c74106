#include "runtime/supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/poll_deadline.h"
#include "base/terminal_text.h"
#include "base/unix_socket.h"
#include "runtime/channel_recorder.h"
#include "runtime/console_log.h"
#include "runtime/guest_event_log.h"
#include "runtime/notify.h"
#include "runtime/qemu_process.h"

namespace sprout {

using nlohmann::json;

namespace {

/// The signals whose default action dumps core (signal(7)).
bool dumps_core(int sig) {
  for (int s : {SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGQUIT, SIGSEGV, SIGSYS, SIGTRAP, SIGXCPU, SIGXFSZ})
    if (s == sig) return true;
  return false;
}

// One VM's loop: the channel recorder (both jobs), and for `sprout run` the qemu
// process; one poll over the signalfd, the status channel and QMP, sleeping until
// something happens or the next deadline of either half.
class Loop {
 public:
  Loop(const Spec& spec, const SuperviseOptions& options)
      : spec_(spec), opt_(options),
        channel_(spec, options.argv.empty() ? ChannelRecorder::Mode::watch : ChannelRecorder::Mode::run,
                 options.record, options.channel),
        console_(spec.console_log()) {
    if (!options.argv.empty()) qemu_.emplace(spec, options.argv, options.quit_grace_seconds);
  }

  RunOutcome run();

 private:
  bool channel_ready() const { return !channel_.recording() || channel_.connected(); }
  bool ended() const { return qemu_ ? qemu_->exited() : stop_requested_; }
  void start_qemu();
  void on_signal(int signo);
  void ready(const char* why);
  void wait_and_dispatch();
  RunOutcome finish();
  /// How the run ended, and the exit status that says it.
  std::pair<RunOutcome, std::string> outcome() const;
  /// qemu failed: its last words into the log (and `how`, when the guest never spoke).
  void explain_failure(std::string& how, json& exited) const;

  const Spec& spec_;
  const SuperviseOptions& opt_;
  ChannelRecorder channel_;
  std::optional<QemuProcess> qemu_;
  ConsoleLogCap console_;
  sigset_t old_mask_{};
  int sfd_ = -1;
  bool ready_sent_ = false;              // READY=1 once, when `ready` is "started"
  std::uint64_t accepted_at_start_ = 0;  // guest events recorded when qemu started
  bool stop_requested_ = false;          // watch: a signal ends the loop
  std::string stop_signal_;
};

void Loop::ready(const char* why) {
  if (ready_sent_ || spec_.ready != Ready::started) return;
  notify_ready(why);
  ready_sent_ = true;
}

void Loop::start_qemu() {
  channel_.set_state(HostState::starting);
  accepted_at_start_ = channel_.accepted();
  if (std::string why = qemu_->start(old_mask_); why.empty()) {
    channel_.set_qemu_pid(qemu_->pid());
    channel_.set_state(HostState::starting);  // now with qemu's pid: it runs
    channel_.host_event("qemu-started", fmt::format("qemu started (pid {})", qemu_->pid()), {{"pid", qemu_->pid()}});
    notify_status("qemu started; waiting for the guest");
  }
}

void Loop::on_signal(int signo) {
  if (signo == SIGCHLD) {
    if (qemu_) qemu_->on_sigchld();
  } else if (!qemu_) {
    spdlog::info("{}: {} received; stopping the recorder", spec_.name, strsignal(signo));
    notify_stopping();
    stop_requested_ = true;
    stop_signal_ = sigabbrev_np(signo) ? std::string("SIG") + sigabbrev_np(signo) : strsignal(signo);
  } else if (qemu_->stop() == QemuProcess::Stop::none) {
    spdlog::info("{}: {} received; shutting the VM down", spec_.name, strsignal(signo));
    channel_.host_event("stop-requested", fmt::format("asked to stop: power button, then quit after {} s",
                                                      spec_.shutdown_timeout_seconds));
    notify_stopping();
    qemu_->request_stop();
    channel_.set_state(HostState::stopping);
  } else if (qemu_->stop() == QemuProcess::Stop::power_down) {
    spdlog::warn("{}: second {}; quitting qemu now", spec_.name, strsignal(signo));
    qemu_->request_stop();
  }
}

void Loop::wait_and_dispatch() {
  int timeout = channel_.timeout_ms(60'000);
  if (qemu_) {
    timeout = qemu_->timeout_ms(std::min(timeout, ms_until(console_.next_check())), channel_ready());
  }
  pollfd fds[3];
  int n = 0;
  fds[n++] = {sfd_, POLLIN, 0};
  int status_idx = -1, qmp_idx = -1;
  if (channel_.fd() >= 0) {
    status_idx = n;
    fds[n++] = {channel_.fd(), POLLIN, 0};
  }
  if (auto q = qemu_ ? qemu_->qmp_poll() : std::nullopt) {
    qmp_idx = n;
    fds[n++] = *q;
  }
  int r = ::poll(fds, n, timeout);
  if (r < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
  if (r <= 0) return;
  if (fds[0].revents & POLLIN) {
    signalfd_siginfo si{};
    while (!ended() && ::read(sfd_, &si, sizeof(si)) == sizeof(si)) on_signal(static_cast<int>(si.ssi_signo));
  }
  if (status_idx >= 0 && (fds[status_idx].revents & (POLLIN | POLLHUP | POLLERR))) channel_.on_readable();
  if (qmp_idx >= 0 && fds[qmp_idx].revents != 0) qemu_->on_qmp(fds[qmp_idx].revents);
}

RunOutcome Loop::run() {
  channel_.open();
  // READY=1 once the guest is specialized (or has failed, so that a unit does not
  // time out into a restart loop); or, when `ready` is "started", at the status
  // channel's first connection (at once when another process records).
  channel_.on_event(GuestEventLog(spec_.name, spec_.ready == Ready::specialized));
  channel_.on_first_connection = [this] { ready("status channel connected"); };
  sfd_ = make_signal_fd(qemu_.has_value(), &old_mask_);
  if (qemu_) {
    start_qemu();
  } else {
    channel_.set_state(HostState::waiting, "no VM is connected yet");
    spdlog::info("{}: recording {}", spec_.name, channel_.source_name());
  }
  if (!opt_.record) ready("qemu started");
  while (!ended()) {
    channel_.tick();
    if (qemu_) {
      qemu_->tick(channel_ready());
      console_.tick();
    }
    wait_and_dispatch();
  }
  return finish();
}

std::pair<RunOutcome, std::string> Loop::outcome() const {
  if (!qemu_) return {RunOutcome::recorder_stopped, fmt::format("sprout watch stopped on {}", stop_signal_)};
  const int ws = qemu_->wait_status();
  const QemuProcess::Stop stop = qemu_->stop();
  if (WIFSIGNALED(ws)) {
    const int sig = WTERMSIG(ws);
    const std::string name = sigabbrev_np(sig) ? fmt::format(" (SIG{})", sigabbrev_np(sig)) : "";
    // A signal that dumps core is qemu's own fault (an assertion, a bad access), as
    // systemd's Result=core-dump says; SIGKILL or SIGTERM came from someone.
    if (stop != QemuProcess::Stop::killed && dumps_core(sig))
      return {RunOutcome::crashed,
              fmt::format("qemu crashed (signal {}{}{})", sig, name, WCOREDUMP(ws) ? ", core dumped" : "")};
    return {RunOutcome::killed, fmt::format("qemu killed by signal {}{}{}", sig, name,
                                            stop == QemuProcess::Stop::killed ? " after quit timed out" : "")};
  }
  if (stop >= QemuProcess::Stop::quit) return {RunOutcome::quit_after_timeout, qemu_->quit_reason()};
  if (WEXITSTATUS(ws) == 0)
    return {RunOutcome::powered_off,
            stop == QemuProcess::Stop::power_down ? "guest powered off on request" : "guest powered off"};
  return {RunOutcome::failed, fmt::format("qemu exited with status {}", WEXITSTATUS(ws))};
}

void Loop::explain_failure(std::string& how, json& exited) const {
  // What qemu said about it (STATE/qemu.log), escaped: it may quote guest input.
  exited["qemuStderr"] = qemu_->log_tail(20);
  const std::vector<std::string> tail = qemu_->log_tail(20, true);
  // qemu that dies before the guest said a word (a KVM that cannot run it, a bad
  // option): its last words and the spec key to change go into `how`, which status,
  // wait and logs show.
  if (qemu_->stop() < QemuProcess::Stop::quit && channel_.accepted() == accepted_at_start_) {
    how += " before the guest started";
    if (!tail.empty()) how += fmt::format("; qemu said: {}", utf8_truncate(tail.back(), 300));
    how += fmt::format(" (all of it: {})", qemu_->log_path().string());
    if (!opt_.accel_hint.empty()) how += "; " + opt_.accel_hint;
  }
  spdlog::error("{}: {}", spec_.name, for_terminal(how));
  for (const auto& l : tail) spdlog::error("{}: qemu: {}", spec_.name, for_terminal(l));
}

RunOutcome Loop::finish() {
  // qemu is gone (or the watcher stops): take what is left in the status channel.
  channel_.close();
  if (qemu_) qemu_->close();
  ::close(sfd_);
  ::sigprocmask(SIG_SETMASK, &old_mask_, nullptr);

  auto [outcome, how] = this->outcome();
  json exited{{"exit", static_cast<int>(outcome)}};
  if (outcome == RunOutcome::powered_off || !qemu_)
    spdlog::info("{}: {}", spec_.name, how);
  else
    explain_failure(how, exited);
  if (qemu_)
    channel_.host_event("qemu-exited", how, exited);
  else
    channel_.host_event("recorder-stopped", how);
  channel_.set_stopped(how, static_cast<int>(outcome));
  notify_status(how);
  return outcome;
}

}  // namespace

RunOutcome supervise(const Spec& spec, const SuperviseOptions& options) { return Loop(spec, options).run(); }

}  // namespace sprout
