// sprout start NAME: `sprout run NAME` in the background, detached from this terminal
// and process (as virsh start, docker start and microvm's units do). It returns once
// the run has prepared the VM and qemu runs (its record names qemu's pid), or with the
// run's own failure when the run ends first (bounded either way); the run's output
// goes to STATE/run.log. For a VM the
// installed units run, `systemctl start sprout-vm@NAME` is the way that survives the
// host's reboot; this one is for VMs started by hand.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "error.h"
#include "runtime/run_lock.h"
#include "spec/spec.h"
#include "spec/spec_dir.h"
#include "status/run_state.h"
#include "subprocess.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

void start_options(cxxopts::Options& o) {
  o.add_options()("qemu", "the qemu binary (passed to sprout run)",
                  cxxopts::value<std::string>()->default_value("qemu-system-x86_64"), "PROGRAM")(
      "wait-seconds", "how long to wait for the run to prepare the VM and start qemu",
      cxxopts::value<int>()->default_value("600"), "SECONDS");
}

std::string last_lines(const fs::path& file, std::size_t n) {
  std::ifstream in(file);
  std::deque<std::string> tail;
  for (std::string line; std::getline(in, line);) {
    tail.push_back("  | " + line);
    if (tail.size() > n) tail.pop_front();
  }
  std::string out;
  for (const auto& l : tail) out += "\n" + l;
  return out;
}

}  // namespace

int cmd_start(const Invocation& inv) {
  const auto& a = inv.args;
  Spec spec = *inv.vm;
  if (spec.backend != Backend::qemu)
    throw InputError(fmt::format("{}: backend is \"{}\"; start a libvirt VM with `sprout define {} --start`",
                                 spec.file.string(), name_of(spec.backend), vm_arguments(spec)));
  if (auto pid = run_lock_holder(spec)) {
    fmt::print("{}: already running (sprout run, pid {})\n", spec.name, *pid);
    return 0;
  }
  spec.state().make_private(spec.backend == Backend::libvirt);
  const fs::path log = spec.state().run_log();
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, StateDir::kFileMode);
  if (fd < 0) throw std::runtime_error(fmt::format("{}: cannot open: {}", log.string(), std::strerror(errno)));
  SpawnOptions run;
  run.argv = {fs::read_symlink("/proc/self/exe").string(), "run", "--spec", spec.file.string(), "--qemu",
              a["qemu"].as<std::string>()};
  run.stdout_fd = run.stderr_fd = fd;
  run.detach = true;
  Child child = spawn(run);
  ::close(fd);
  if (!child) throw std::runtime_error(fmt::format("cannot start sprout run: {}", child.error));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(a["wait-seconds"].as<int>());
  while (std::chrono::steady_clock::now() < deadline) {
    int ws = 0;
    if (::waitpid(child.pid, &ws, WNOHANG) == child.pid) {
      fmt::print(stderr, "{}: sprout run ended at once (exit status {}); its last words ({}):{}\n", spec.name,
                 WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws), log.string(), last_lines(log, 10));
      return 1;
    }
    const RecordFile record = read_record(spec.status_file());
    if (run_lock_holder(spec) == child.pid && record.record.host.qemu_pid > 0 &&
        view_run(spec, record).state == RunView::live) {
      fmt::print("{}: started (sprout run, pid {}); follow it: sprout wait {}; its output: {}\n", spec.name,
                 child.pid, vm_arguments(spec), log.string());
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  fmt::print(stderr, "{}: sprout run (pid {}) has not started qemu after {} s; it goes on (see {})\n",
             spec.name, child.pid, a["wait-seconds"].as<int>(), log.string());
  return 1;
}

const Command kStartCommand = {"start", "start a VM in the background (sprout run, detached)",
    "Start a QEMU VM in the background: `sprout run NAME` detached from this terminal, its\n"
    "output in STATE/run.log. Returns once the VM is prepared and qemu runs (exit 0; 0 too\n"
    "when it already runs), or 1 with the run's last words when it ends first. Stop it with\n"
    "`sprout stop NAME`; follow it with `sprout wait NAME` and `sprout logs NAME`. (A VM of\n"
    "the installed units: `systemctl start sprout-vm@NAME`.)",
    Needs::one_vm, start_options, cmd_start};

}  // namespace sprout
