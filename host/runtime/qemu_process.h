// The qemu half of `sprout run`'s supervisor: starts qemu (its stderr into
// STATE/qemu.log, PR_SET_PDEATHSIG, which the kernel clears when qemu switches user:
// a supervisor that ends by an exception kills and reaps it, and one that was killed
// leaves it to the next run, orphaned_qemu.h), follows
// it over QMP without ever waiting for QMP (qmp_client.h), and stops it in one
// sequence whose stage is one enum: the power button, `quit` once the spec's shutdown
// timeout has passed (or at a second signal), SIGKILL after the grace period. Guest
// reboots happen inside qemu and do not end it. It never blocks: the supervisor's
// poll loop asks it for its descriptor and its next deadline, and calls it back.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include <poll.h>

#include "runtime/qmp_client.h"
#include "spec/spec.h"

namespace sprout {

class QemuProcess {
 public:
  using Clock = std::chrono::steady_clock;
  /// How far the stop sequence has gone. Each stage implies the ones before it.
  enum class Stop {
    none,           ///< running as it likes
    power_down,     ///< asked to stop: the power button (sent once QMP is up)
    quit,           ///< the guest ignored it (or a second signal): `quit`, then SIGKILL after the grace
    killed,         ///< SIGKILL sent
  };

  QemuProcess(const Spec& spec, std::vector<std::string> argv, int quit_grace_seconds);
  /// Kills and reaps a qemu that is still running (the supervisor is unwinding).
  ~QemuProcess();
  QemuProcess(const QemuProcess&) = delete;
  QemuProcess& operator=(const QemuProcess&) = delete;

  /// Starts qemu with `signal_mask` as its mask. On failure qemu never ran: the reason
  /// takes the place of its last words in qemu.log and it counts as exited with 127
  /// (as a shell says of a program it cannot run); returns that reason, "" on success.
  std::string start(const sigset_t& signal_mask);
  pid_t pid() const { return pid_; }

  /// SIGCHLD arrived: reaps qemu if it has exited.
  void on_sigchld();
  bool exited() const { return exited_; }
  int wait_status() const { return wstatus_; }

  /// A stop signal: the first starts the sequence, the next one quits at once.
  /// Returns the stage reached.
  Stop request_stop();
  Stop stop() const { return stop_; }
  /// Why `quit` was sent: the guest ignored the power button, or a second request.
  const std::string& quit_reason() const { return quit_reason_; }

  /// Connects QMP once `channel_ready` (the guest's channel is up, so qemu is), and
  /// moves the stop sequence on when its deadlines pass.
  void tick(bool channel_ready);
  /// QMP's descriptor and events to poll for, when connected.
  std::optional<pollfd> qmp_poll() const;
  void on_qmp(short revents);
  /// Milliseconds until tick() has something to do (at most `cap`).
  int timeout_ms(int cap, bool channel_ready) const;

  /// Closes QMP (qemu has exited).
  void close() { qmp_.close(); }
  /// The last `lines` lines of qemu.log, each cut at 512 bytes (unescaped); with
  /// `errors_only`, without qemu's informational lines ("...: info: QEMU waiting for
  /// connection on: ..."), which are no cause of anything.
  std::vector<std::string> log_tail(std::size_t lines, bool errors_only = false) const;
  std::filesystem::path log_path() const;

 private:
  void qmp_lost();
  void qmp_ready();
  void send_quit(std::string reason);

  const Spec& spec_;
  const std::vector<std::string> argv_;
  const int quit_grace_seconds_;
  pid_t pid_ = -1;
  bool exited_ = false;
  int wstatus_ = 0;

  Stop stop_ = Stop::none;
  std::string quit_reason_;
  bool powerdown_sent_ = false;  // the power button reached QMP
  bool quit_by_qmp_ = false;     // quit went to QMP (SIGTERM instead if it cannot be written)
  Clock::time_point powerdown_deadline_{}, kill_deadline_{};

  QmpClient qmp_;
  bool qmp_up_ = false;  // a connection was started and has not been seen ending yet
  Clock::time_point next_qmp_try_ = Clock::now();
};

}  // namespace sprout
