#include "supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "console_log.h"
#include "guest_event_log.h"
#include "notify.h"
#include "qmp_client.h"
#include "status_recorder.h"
#include "status_store.h"
#include "subprocess.h"
#include "unix_socket.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

pid_t spawn(const std::vector<std::string>& argv, const sigset_t& old_mask) {
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid > 0) return pid;
  // Child: qemu dies with us, whatever kills us.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD, SIGPIPE}) ::signal(s, SIG_DFL);
  ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  ::setpgid(0, 0);  // a Ctrl-C on the terminal reaches run, which powers down gracefully
  int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (null >= 0) ::dup2(null, 0);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  ::execvp(args[0], args.data());
  std::string msg = fmt::format("sprout run: cannot start {}: {}\n", argv[0], std::strerror(errno));
  (void)!::write(2, msg.data(), msg.size());
  ::_exit(127);
}

int ms_until(Clock::time_point t) {
  auto d = std::chrono::duration_cast<milliseconds>(t - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(d, 0, 60'000));
}

}  // namespace

RunOutcome supervise(const Spec& spec, const SuperviseOptions& options) {
  StatusStore store(spec.state_dir);
  StatusRecorder rec(spec.name, store);
  const std::int64_t started_ms = unix_time_ms();
  if (options.record) {
    rec.reset();
    rec.set_host({{"state", "starting"}, {"supervisor", ::getpid()}, {"startedMs", started_ms}});
  }
  rec.on_event = GuestEventLog(spec.name, spec.ready == "specialized");
  ConsoleLogCap console(spec.console_log());
  bool ready_sent = false;  // READY=1 on connection, when `ready` is "started"

  std::error_code ec;
  fs::remove(spec.status_socket(), ec);
  fs::remove(spec.qmp_socket(), ec);

  sigset_t old_mask;
  int sfd = make_signal_fd(true, &old_mask);
  spdlog::info("{}: starting {}", spec.name, format_command(options.argv));
  pid_t pid = spawn(options.argv, old_mask);
  notify_status("qemu started; waiting for the guest");

  int status_fd = -1;
  Clock::time_point next_status_try = Clock::now();
  QmpClient qmp;
  Clock::time_point next_qmp_try = Clock::now();
  bool shutdown_requested = false, powerdown_sent = false, quit_sent = false, killed = false, forced = false;
  bool quit_by_qmp = false;  // quit went to QMP (SIGTERM instead if it cannot be written)
  Clock::time_point powerdown_deadline{}, kill_deadline{};
  bool child_done = false;
  int wstatus = 0;
  bool host_running_written = false;

  auto mark_running = [&] {
    if (host_running_written) return;
    host_running_written = true;
    if (options.record)
      rec.set_host({{"state", "running"}, {"pid", pid}, {"supervisor", ::getpid()}, {"startedMs", started_ms}});
    if (!ready_sent && spec.ready == "started") {
      notify_ready("qemu started");
      ready_sent = true;
    }
  };
  if (!options.record) mark_running();

  auto send_quit = [&] {
    quit_sent = true;
    kill_deadline = Clock::now() + std::chrono::seconds(options.quit_grace_seconds);
    quit_by_qmp = qmp.send("quit");
    if (!quit_by_qmp) ::kill(pid, SIGTERM);  // qemu quits on SIGTERM too
  };
  auto request_shutdown = [&] {
    shutdown_requested = true;
    notify_stopping();
    powerdown_deadline = Clock::now() + std::chrono::seconds(spec.shutdown_timeout_seconds);
    if (options.record)
      rec.set_host({{"state", "stopping"}, {"pid", pid}, {"supervisor", ::getpid()}, {"startedMs", started_ms}});
    if (qmp.send("system_powerdown")) {
      powerdown_sent = true;
      spdlog::info("{}: asked the guest to power down (up to {} s)", spec.name, spec.shutdown_timeout_seconds);
    }
  };

  // The QMP connection ended (qemu closed it, or it missed a deadline).
  bool qmp_up = false;  // a connection was started and has not been seen ending yet
  auto on_qmp_lost = [&] {
    qmp_up = false;
    spdlog::debug("{}: QMP: {}", spec.name, qmp.lost());
    // Once negotiated, a connection ends because qemu is going away: no new one.
    next_qmp_try = Clock::now() + (qmp.lost_after_ready() ? milliseconds(std::chrono::hours(24)) : milliseconds(100));
    if (quit_by_qmp && qmp.lost_unsent() && !child_done) ::kill(pid, SIGTERM);
    quit_by_qmp = false;
  };
  // The QMP handshake is done: a power-down asked for before goes out now.
  auto on_qmp_ready = [&] {
    if (shutdown_requested && !powerdown_sent && !quit_sent) {
      powerdown_sent = qmp.send("system_powerdown");
      if (powerdown_sent) spdlog::info("{}: asked the guest to power down", spec.name);
    }
  };

  while (!child_done) {
    auto now = Clock::now();
    // Connect the status channel as soon as qemu has made the socket.
    if (options.record && status_fd < 0 && now >= next_status_try) {
      status_fd = connect_unix(spec.status_socket());
      if (status_fd >= 0) {
        rec.on_connect();
        spdlog::debug("{}: status channel connected", spec.name);
        mark_running();
      } else {
        next_status_try = now + milliseconds(10);
      }
    }
    // QMP: started here, driven by poll (qmp.handle), never waited for.
    if (!qmp.active() && (status_fd >= 0 || !options.record) && now >= next_qmp_try) {
      std::string err;
      if (qmp.start(spec.qmp_socket(), milliseconds(2000), &err))
        qmp_up = true;
      else
        next_qmp_try = now + milliseconds(100);
    }
    qmp.expire(now);
    if (qmp_up && !qmp.active()) on_qmp_lost();
    now = Clock::now();
    if (shutdown_requested && !quit_sent && now >= powerdown_deadline) {
      spdlog::warn("{}: the guest did not power off within {} s; quitting qemu", spec.name,
                   spec.shutdown_timeout_seconds);
      forced = true;
      send_quit();
    }
    if (quit_sent && !killed && Clock::now() >= kill_deadline) {
      spdlog::warn("{}: qemu still running {} s after quit; killing it", spec.name, options.quit_grace_seconds);
      ::kill(pid, SIGKILL);
      killed = true;
    }
    if (auto due = rec.flush_due(); due && Clock::now() >= *due) rec.flush();
    console.tick();

    // Sleep until something happens or the next deadline.
    int timeout = std::min(60'000, ms_until(console.next_check()));
    if (options.record && status_fd < 0) timeout = std::min(timeout, ms_until(next_status_try));
    if (!qmp.active() && (status_fd >= 0 || !options.record)) timeout = std::min(timeout, ms_until(next_qmp_try));
    if (auto due = qmp.deadline()) timeout = std::min(timeout, ms_until(*due));
    if (auto due = rec.flush_due()) timeout = std::min(timeout, ms_until(*due));
    if (shutdown_requested && !quit_sent) timeout = std::min(timeout, ms_until(powerdown_deadline));
    if (quit_sent && !killed) timeout = std::min(timeout, ms_until(kill_deadline));

    pollfd fds[3];
    int n = 0;
    fds[n++] = {sfd, POLLIN, 0};
    int status_idx = -1, qmp_idx = -1;
    if (status_fd >= 0) {
      status_idx = n;
      fds[n++] = {status_fd, POLLIN, 0};
    }
    if (qmp.active()) {
      qmp_idx = n;
      fds[n++] = {qmp.fd(), qmp.poll_events(), 0};
    }
    int r = ::poll(fds, n, timeout);
    if (r < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
    if (r <= 0) continue;

    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si{};
      while (::read(sfd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGCHLD) {
          pid_t w = ::waitpid(pid, &wstatus, WNOHANG);
          if (w == pid) child_done = true;
          if (w < 0 && errno == ECHILD) {  // reaped by somebody else: status unknown
            spdlog::warn("{}: qemu's exit status was lost (was SIGCHLD ignored?)", spec.name);
            wstatus = 0xff00;  // "exited with status 255"
            child_done = true;
          }
        } else if (!shutdown_requested) {
          spdlog::info("{}: {} received; shutting the VM down", spec.name, strsignal(static_cast<int>(si.ssi_signo)));
          request_shutdown();
        } else if (!quit_sent) {
          spdlog::warn("{}: second {}; quitting qemu now", spec.name, strsignal(static_cast<int>(si.ssi_signo)));
          forced = true;
          send_quit();
        }
      }
    }
    if (status_idx >= 0 && (fds[status_idx].revents & (POLLIN | POLLHUP | POLLERR))) {
      if (!drain_status_socket(rec, status_fd)) next_status_try = Clock::now() + milliseconds(100);
    }
    if (qmp_idx >= 0 && fds[qmp_idx].revents != 0 && qmp.active()) {
      const bool was_ready = qmp.ready();
      for (const auto& m : qmp.handle(fds[qmp_idx].revents)) {
        if (!m.contains("event")) continue;
        std::string ev = m["event"].is_string() ? m["event"].get<std::string>() : "";
        if (ev == "RESET") spdlog::info("{}: guest reset (reboot in place)", spec.name);
        else if (ev == "SHUTDOWN") spdlog::info("{}: guest shut down", spec.name);
        else if (ev == "POWERDOWN") spdlog::debug("{}: power button pressed", spec.name);
      }
      if (!was_ready && qmp.ready()) on_qmp_ready();
    }
    if (qmp_up && !qmp.active()) on_qmp_lost();  // ended in handle() or in a send
  }

  // qemu is gone: take what is left in the status channel.
  if (status_fd >= 0) {
    drain_status_socket(rec, status_fd);
    if (status_fd >= 0) {
      rec.on_disconnect();
      ::close(status_fd);
    }
  }
  qmp.close();
  ::close(sfd);
  ::sigprocmask(SIG_SETMASK, &old_mask, nullptr);

  RunOutcome outcome;
  std::string how;
  if (WIFSIGNALED(wstatus)) {
    outcome = RunOutcome::killed;
    how = fmt::format("qemu killed by signal {}{}", WTERMSIG(wstatus), killed ? " after quit timed out" : "");
  } else if (forced) {
    outcome = RunOutcome::quit_after_timeout;
    how = fmt::format("guest ignored power-down for {} s; qemu quit", spec.shutdown_timeout_seconds);
  } else if (WEXITSTATUS(wstatus) == 0) {
    outcome = RunOutcome::powered_off;
    how = shutdown_requested ? "guest powered off on request" : "guest powered off";
  } else {
    outcome = RunOutcome::failed;
    how = fmt::format("qemu exited with status {}{}", WEXITSTATUS(wstatus),
                      host_running_written ? "" : " before the guest started (see the messages above)");
  }
  if (outcome == RunOutcome::powered_off)
    spdlog::info("{}: {}", spec.name, how);
  else
    spdlog::error("{}: {}", spec.name, how);
  if (options.record) {
    rec.flush();
    rec.set_host({{"state", "stopped"}, {"how", how}, {"exit", static_cast<int>(outcome)},
                  {"startedMs", started_ms}, {"stoppedMs", unix_time_ms()}});
  }
  notify_status(how);
  return outcome;
}

}  // namespace sprout
