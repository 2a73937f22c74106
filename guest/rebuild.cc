#include "rebuild.h"

#include <fcntl.h>
#include <unistd.h>

namespace sprout::agent {

std::vector<std::string> rebuild_argv(const std::vector<std::string>& prefix, const RebuildSettings& r) {
  std::vector<std::string> argv = prefix;
  if (r.mode == "flake") {
    argv.push_back("--flake");
    argv.push_back(r.target);
    // The config disk is read-only: a changed lock must not be written next to it.
    argv.push_back("--no-write-lock-file");
  } else {
    argv.push_back("-I");
    argv.push_back("nixos-config=" + r.target);
    // Without it nixos-rebuild builds /etc/nixos/flake.nix whenever the tree has one.
    argv.push_back("--no-flake");
  }
  argv.insert(argv.end(), r.extra_args.begin(), r.extra_args.end());
  return argv;
}

RebuildOutcome run_rebuild(const RebuildRun& run) {
  RebuildOutcome out;
  int log_fd = -1;
  if (!run.log_file.empty())
    log_fd = ::open(run.log_file.c_str(), O_WRONLY | O_CREAT | (run.append_log ? O_APPEND : O_TRUNC) | O_CLOEXEC, 0600);
  ProcessOptions o;
  o.argv = run.argv;
  o.timeout = run.timeout;
  o.cancel_fd = run.cancel_fd;
  o.kill_grace = std::chrono::milliseconds(3000);
  o.max_capture_bytes = 256 * 1024;  // enough for the last lines
  bool no_space = false;             // ENOSPC, whoever said it (Nix, cp, the activation)
  o.on_line = [&](std::string_view line) {
    no_space = no_space || line.find("No space left on device") != std::string_view::npos;
    if (log_fd >= 0) {
      std::string l(line);
      l += '\n';
      ssize_t n = ::write(log_fd, l.data(), l.size());
      (void)n;
    }
    if (run.on_line) run.on_line(line);
  };
  auto t0 = std::chrono::steady_clock::now();
  ProcessResult r = run_process(o);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (log_fd >= 0) {
    ::fsync(log_fd);
    ::close(log_fd);
  }
  out.ok = r.ok();
  out.timed_out = r.timed_out;
  out.interrupted = r.cancelled;
  out.describe = r.started ? r.describe() : "could not start: " + r.error;
  if (!out.ok && no_space)
    out.describe += ": the guest's disk is full (No space left on device); give the VM a larger disk (the spec's "
                    "diskSize, for a new overlay) or free space in it";
  out.last_lines = r.last_lines(20);
  return out;
}

}  // namespace sprout::agent
