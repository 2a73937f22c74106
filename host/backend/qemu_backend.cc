// The qemu backend: the VM runs under `sprout run` (runtime/supervisor.h), whose run
// lock says whether it runs and names the process to ask to stop it.
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "backend/backend.h"
#include "runtime/run_lock.h"
#include "spec/spec_dir.h"
#include "status/run_state.h"
#include "status/status_store.h"

namespace sprout {

namespace {

using Clock = std::chrono::steady_clock;

void signal_run(pid_t pid, int sig) {
  if (::kill(pid, sig) != 0)
    throw std::runtime_error(fmt::format("cannot signal sprout run (pid {}): {}", pid, std::strerror(errno)));
}

class QemuBackend final : public VmBackend {
 public:
  std::optional<bool> running(const Spec& spec) const override { return run_lock_held(spec); }

  /// SIGTERM to `sprout run`, which presses the power button, quits qemu after the
  /// spec's shutdownTimeoutSeconds and kills it 10 s later (supervisor.h); a shorter
  /// grace: SIGINT after it, which has the run quit qemu at once. Then waits (bounded)
  /// until the run is over.
  std::string stop(const Spec& spec, const StopRequest& how) const override {
    auto pid = run_lock_holder(spec);
    if (!pid) {
      if (run_lock_held(spec))
        throw std::runtime_error(fmt::format("VM {} runs, but {} does not name a live `sprout run` to ask; stop it "
                                             "where it was started",
                                             spec.name, spec.state().run_lock().string()));
      return "not running";
    }
    signal_run(*pid, SIGTERM);
    const auto grace = std::min(how.grace_for(spec), std::chrono::seconds(spec.shutdown_timeout_seconds));
    if (grace.count() == 0)
      fmt::print("{}: asked its sprout run (pid {}) to stop it now (qemu quits)\n", spec.name, *pid);
    else
      fmt::print("{}: asked its sprout run (pid {}) to shut it down (power button; up to {} s)\n", spec.name, *pid,
                 grace.count());
    std::fflush(stdout);
    // The supervisor's own sequence is bounded: the power-down timeout, 10 s of grace
    // after quit, then SIGKILL. Give it that and a margin.
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::seconds(spec.shutdown_timeout_seconds + 10 + 30);
    bool hurried = grace.count() >= spec.shutdown_timeout_seconds;  // the run's own timeout does it
    while (run_lock_held(spec)) {
      if (!hurried && Clock::now() >= start + grace) {
        // A different signal from the first: two pending SIGTERMs would be one.
        signal_run(*pid, SIGINT);
        hurried = true;
      }
      if (Clock::now() >= deadline)
        throw std::runtime_error(fmt::format("VM {}: sprout run (pid {}) did not end within {} s of SIGTERM",
                                             spec.name, *pid, spec.shutdown_timeout_seconds + 40));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    RunView v = view_run(spec, read_record(spec.status_file()));
    return v.state == RunView::ended ? v.how : "stopped";
  }

  std::string remove(const Spec& spec) const override { return stop(spec, StopRequest{}); }

  std::string start_hint(const Spec& spec) const override {
    if (installed_spec(spec))
      return fmt::format("systemctl start sprout-vm@{}, or sprout run {}", spec.name, vm_arguments(spec));
    return fmt::format("sprout run {}", vm_arguments(spec));
  }

  std::string unrecorded_note(const Spec&) const override {
    return "a run holds the VM's lock but its record is not there yet (starting, or run with --external-recorder "
           "and no `sprout watch`)";
  }

  std::unique_ptr<ChannelSource> status_channel(const Spec& spec) const override {
    return unix_channel_source(spec.status_socket());
  }

  std::unique_ptr<ConsoleSession> attach_console(const Spec&) const override { return nullptr; }
};

}  // namespace

std::unique_ptr<ChannelSource> test_local_status_channel(const Spec& spec) {
  if (!std::getenv("SPROUT_TEST_LOCAL_STATUS_SOCKET")) return nullptr;
  // Said every time: set by mistake outside the tests, it would leave a libvirt VM's
  // watcher waiting on a socket nothing makes.
  spdlog::warn("{}: SPROUT_TEST_LOCAL_STATUS_SOCKET is set (a test seam): reading {} instead of the "
               "domain's channel through libvirt; unset it outside sprout's tests",
               spec.name, spec.status_socket().string());
  return unix_channel_source(spec.status_socket());
}

const VmBackend& qemu_backend() {
  static const QemuBackend backend;
  return backend;
}

const VmBackend& backend_for(const Spec& spec) { switch (spec.backend) {
    case Backend::libvirt: return libvirt_backend();
    case Backend::qemu: break;
  }
  return qemu_backend(); }

}  // namespace sprout
