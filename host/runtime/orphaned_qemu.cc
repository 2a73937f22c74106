#include "runtime/orphaned_qemu.h"

#include <signal.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/process_identity.h"
#include "status/record.h"

namespace sprout {

namespace {

/// Whether /proc/PID/cmdline has `arg_part` inside one of its arguments.
bool command_line_names(pid_t pid, const std::string& arg_part) {
  std::ifstream in(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return !arg_part.empty() && all.find(arg_part) != std::string::npos;
}

bool running(pid_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(in, line)) return false;
  const auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

}  // namespace

bool end_orphaned_qemu(const Spec& spec) {
  const RecordFile file = read_record(spec.status_file());
  if (file.state != RecordFile::ok) return false;
  const HostPart& host = file.record.host;
  if (host.qemu_pid <= 0 || (host.supervisor && host.supervisor->alive())) return false;
  const pid_t pid = static_cast<pid_t>(host.qemu_pid);
  // qemu's QMP socket path is on its command line, and is this VM's alone.
  if (!running(pid) || !command_line_names(pid, spec.qmp_socket().string())) return false;
  spdlog::warn("{}: qemu (pid {}) still runs the guest although its sprout run is gone (killed?); killing it "
               "before this run starts",
               spec.name, pid);
  ::kill(pid, SIGKILL);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (running(pid)) {
    if (std::chrono::steady_clock::now() >= deadline)
      throw std::runtime_error(fmt::format("{}: the orphaned qemu (pid {}) did not die within 10 s of SIGKILL",
                                           spec.name, pid));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace sprout
