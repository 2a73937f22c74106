#include "runtime/qemu_process.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/poll_deadline.h"
#include "status_protocol.h"
#include "subprocess.h"

namespace sprout {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

QemuProcess::QemuProcess(const Spec& spec, std::vector<std::string> argv, int quit_grace_seconds)
    : spec_(spec), argv_(std::move(argv)), quit_grace_seconds_(quit_grace_seconds) {}

QemuProcess::~QemuProcess() {
  if (pid_ <= 0 || exited_) return;
  // The supervisor ends without having seen qemu exit (an exception): qemu must not
  // outlive it, and its parent-death signal is gone once it switched user.
  spdlog::warn("{}: the supervisor ends with qemu (pid {}) still running; killing it", spec_.name, pid_);
  ::kill(pid_, SIGKILL);
  int ws = 0;
  while (::waitpid(pid_, &ws, 0) < 0 && errno == EINTR) {
  }
}

fs::path QemuProcess::log_path() const { return spec_.state().qemu_log(); }

std::string QemuProcess::start(const sigset_t& signal_mask) {
  std::error_code ec;
  fs::remove(spec_.status_socket(), ec);
  fs::remove(spec_.qmp_socket(), ec);
  spdlog::info("{}: starting {}", spec_.name, format_command(argv_));
  // qemu's stderr goes to STATE/qemu.log (this run's only); what it said is shown
  // when it fails, and kept with the host's events.
  int err_fd = ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, StateDir::kFileMode);
  if (err_fd < 0) spdlog::warn("{}: cannot write {}: {}", spec_.name, log_path().string(), std::strerror(errno));
  SpawnOptions qemu;
  qemu.argv = argv_;
  qemu.stderr_fd = err_fd;
  // Not the supervisor's signalfd signals: qemu gets SIGTERM, SIGINT, SIGHUP and
  // SIGCHLD as usual. (In its own process group: a Ctrl-C on the terminal reaches
  // run, which powers down gracefully.)
  qemu.signal_mask = signal_mask;
  Child child = spawn(qemu);
  std::string why;
  if (child) {
    pid_ = child.pid;
  } else {
    why = child.error;
    std::string said = fmt::format("sprout run: cannot start {}\n", why);
    if (err_fd < 0 || ::write(err_fd, said.data(), said.size()) < 0)
      spdlog::error("{}: cannot start {}", spec_.name, why);
    exited_ = true;
    wstatus_ = W_EXITCODE(127, 0);
  }
  if (err_fd >= 0) ::close(err_fd);
  return why;
}

void QemuProcess::on_sigchld() {
  if (exited_) return;
  int ws = 0;
  pid_t w = ::waitpid(pid_, &ws, WNOHANG);
  if (w == pid_) {
    exited_ = true;
    wstatus_ = ws;
  } else if (w < 0 && errno == ECHILD) {  // reaped by somebody else: status unknown
    spdlog::warn("{}: qemu's exit status was lost (was SIGCHLD ignored?)", spec_.name);
    exited_ = true;
    wstatus_ = 0xff00;  // "exited with status 255"
  }
}

QemuProcess::Stop QemuProcess::request_stop() {
  if (stop_ == Stop::none) {
    stop_ = Stop::power_down;
    powerdown_deadline_ = Clock::now() + std::chrono::seconds(spec_.shutdown_timeout_seconds);
    if (qmp_.send("system_powerdown")) {
      powerdown_sent_ = true;
      spdlog::info("{}: asked the guest to power down (up to {} s)", spec_.name, spec_.shutdown_timeout_seconds);
    }
  } else if (stop_ == Stop::power_down) {
    send_quit("qemu quit when asked a second time (sprout stop --force or --timeout, or a second signal)");
  }
  return stop_;
}

void QemuProcess::send_quit(std::string reason) {
  stop_ = Stop::quit;
  quit_reason_ = std::move(reason);
  kill_deadline_ = Clock::now() + std::chrono::seconds(quit_grace_seconds_);
  quit_by_qmp_ = qmp_.send("quit");
  if (!quit_by_qmp_) ::kill(pid_, SIGTERM);  // qemu quits on SIGTERM too
}

void QemuProcess::tick(bool channel_ready) {
  if (!qmp_.active() && channel_ready && Clock::now() >= next_qmp_try_) {
    std::string err;
    if (qmp_.start(spec_.qmp_socket(), milliseconds(2000), &err))
      qmp_up_ = true;
    else
      next_qmp_try_ = Clock::now() + milliseconds(100);
  }
  qmp_.expire(Clock::now());
  if (qmp_up_ && !qmp_.active()) qmp_lost();
  if (stop_ == Stop::power_down && Clock::now() >= powerdown_deadline_) {
    spdlog::warn("{}: the guest did not power off within {} s; quitting qemu", spec_.name,
                 spec_.shutdown_timeout_seconds);
    send_quit(fmt::format("guest ignored power-down for {} s; qemu quit", spec_.shutdown_timeout_seconds));
  }
  if (stop_ == Stop::quit && Clock::now() >= kill_deadline_) {
    spdlog::warn("{}: qemu still running {} s after quit; killing it", spec_.name, quit_grace_seconds_);
    ::kill(pid_, SIGKILL);
    stop_ = Stop::killed;
  }
}

// The QMP connection ended (qemu closed it, or it missed a deadline).
void QemuProcess::qmp_lost() {
  qmp_up_ = false;
  spdlog::debug("{}: QMP: {}", spec_.name, qmp_.lost());
  // Once negotiated, a connection ends because qemu is going away: no new one.
  next_qmp_try_ = Clock::now() + (qmp_.lost_after_ready() ? milliseconds(std::chrono::hours(24)) : milliseconds(100));
  if (quit_by_qmp_ && qmp_.lost_unsent() && !exited_) ::kill(pid_, SIGTERM);
  quit_by_qmp_ = false;
}

// The QMP handshake is done: a power-down asked for before goes out now.
void QemuProcess::qmp_ready() {
  if (stop_ == Stop::power_down && !powerdown_sent_) {
    powerdown_sent_ = qmp_.send("system_powerdown");
    if (powerdown_sent_) spdlog::info("{}: asked the guest to power down", spec_.name);
  }
}

std::optional<pollfd> QemuProcess::qmp_poll() const {
  if (!qmp_.active()) return std::nullopt;
  return pollfd{qmp_.fd(), qmp_.poll_events(), 0};
}

void QemuProcess::on_qmp(short revents) {
  if (qmp_.active()) {
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
  if (qmp_up_ && !qmp_.active()) qmp_lost();  // ended in handle() or in a send
}

int QemuProcess::timeout_ms(int cap, bool channel_ready) const {
  int t = cap;
  if (!qmp_.active() && channel_ready) t = std::min(t, ms_until(next_qmp_try_));
  if (auto due = qmp_.deadline()) t = std::min(t, ms_until(*due));
  if (stop_ == Stop::power_down) t = std::min(t, ms_until(powerdown_deadline_));
  if (stop_ == Stop::quit) t = std::min(t, ms_until(kill_deadline_));
  return t;
}

std::vector<std::string> QemuProcess::log_tail(std::size_t lines, bool errors_only) const {
  std::ifstream in(log_path());
  std::deque<std::string> tail;
  std::string line;
  std::size_t bytes = 0;
  while (std::getline(in, line) && bytes < (4u << 20)) {
    bytes += line.size();
    // qemu's info_report() lines read "PROGRAM: [LOCATION: ]info: TEXT".
    if (errors_only && line.find(": info: ") != std::string::npos) continue;
    tail.push_back(utf8_truncate(line, 512));
    if (tail.size() > lines) tail.pop_front();
  }
  return {tail.begin(), tail.end()};
}

}  // namespace sprout
