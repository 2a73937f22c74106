#include "subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

extern char** environ;

namespace sprout {

namespace {

using Clock = std::chrono::steady_clock;

int pidfd_open_compat(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

class LineSplitter {
 public:
  LineSplitter(const ProcessOptions& o, ProcessResult& r) : opts_(o), result_(r) {}
  void feed(const char* data, std::size_t n) {
    if (opts_.capture) {
      result_.output.append(data, n);
      if (result_.output.size() > opts_.max_capture_bytes)
        result_.output.erase(0, result_.output.size() - opts_.max_capture_bytes);
    }
    if (!opts_.on_line) return;
    for (std::size_t i = 0; i < n; ++i) {
      if (data[i] == '\n') {
        emit();
      } else {
        line_.push_back(data[i]);
        if (line_.size() >= opts_.max_line_bytes) emit();
      }
    }
  }
  void flush() {
    if (!line_.empty()) emit();
  }

 private:
  void emit() {
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    opts_.on_line(line_);
    line_.clear();
  }
  const ProcessOptions& opts_;
  ProcessResult& result_;
  std::string line_;
};

std::vector<std::string> build_env(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string_view::npos && extra.contains(std::string(kv.substr(0, eq)))) continue;
    env.emplace_back(kv);
  }
  for (const auto& [k, v] : extra) env.push_back(k + "=" + v);
  return env;
}

}  // namespace

std::string format_command(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    if (a.empty() || a.find_first_of(" \t\n'\"\\$") != std::string::npos) {
      out += '\'';
      for (char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
      out += '\'';
    } else {
      out += a;
    }
  }
  return out;
}

std::string ProcessResult::describe() const {
  if (!started) return fmt::format("could not be started: {}", error);
  if (timed_out) return "timed out and was stopped";
  if (cancelled) return "was interrupted and stopped";
  if (signal != 0) return fmt::format("was killed by signal {} ({})", signal, strsignal(signal));
  return fmt::format("exited with status {}", exit_code);
}

std::vector<std::string> ProcessResult::last_lines(std::size_t n) const {
  std::vector<std::string> lines;
  std::size_t end = output.size();
  while (end > 0 && lines.size() < n) {
    std::size_t start = output.rfind('\n', end - 1);
    std::size_t from = start == std::string::npos ? 0 : start + 1;
    std::string line = output.substr(from, end - from);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.insert(lines.begin(), line);
    if (start == std::string::npos) break;
    end = start;
  }
  return lines;
}

ProcessResult run_process(const ProcessOptions& opts) {
  ProcessResult result;
  if (opts.argv.empty()) {
    result.error = "empty command";
    return result;
  }
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    result.error = fmt::format("pipe: {}", std::strerror(errno));
    return result;
  }

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (opts.stdin_null) posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);  // own process group: a timeout stops all of it
  sigset_t defaults, empty;
  sigfillset(&defaults);
  sigemptyset(&empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  std::vector<char*> argv;
  for (const auto& a : opts.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  auto env_strings = build_env(opts.env);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = -1;
  int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(pipefd[1]);
  if (rc != 0) {
    ::close(pipefd[0]);
    result.error = fmt::format("{}: {}", opts.argv[0], std::strerror(rc));
    return result;
  }
  result.started = true;

  int pidfd = pidfd_open_compat(pid);
  LineSplitter splitter(opts, result);
  const auto start = Clock::now();
  std::optional<Clock::time_point> deadline;
  if (opts.timeout.count() > 0) deadline = start + opts.timeout;
  std::optional<Clock::time_point> kill_at;    // SIGKILL after grace
  std::optional<Clock::time_point> drain_end;  // after exit: stop waiting for the pipe
  bool exited = false, pipe_open = true, stopping = false;
  int status = 0;

  auto stop = [&](bool timed_out) {
    if (stopping) return;
    stopping = true;
    result.timed_out = timed_out;
    result.cancelled = !timed_out;
    ::kill(-pid, SIGTERM);
    kill_at = Clock::now() + opts.kill_grace;
  };

  while (!exited || (pipe_open && Clock::now() < *drain_end)) {
    auto now = Clock::now();
    if (!exited && !stopping && deadline && now >= *deadline) stop(true);
    if (!exited && kill_at && now >= *kill_at) {
      ::kill(-pid, SIGKILL);
      kill_at.reset();
    }
    std::optional<Clock::time_point> wake;
    auto consider = [&](std::optional<Clock::time_point> t) {
      if (t && (!wake || *t < *wake)) wake = t;
    };
    if (!exited && !stopping) consider(deadline);
    if (!exited) consider(kill_at);
    if (exited) consider(drain_end);
    int timeout_ms = 200;  // also bounds the pidfd-less fallback's polling
    if (wake) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*wake - now).count() + 1;
      timeout_ms = static_cast<int>(std::clamp<long long>(ms, 0, 200));
    }
    pollfd fds[3];
    nfds_t n = 0;
    int out_idx = -1, pid_idx = -1, cancel_idx = -1;
    if (pipe_open) fds[out_idx = static_cast<int>(n++)] = {pipefd[0], POLLIN, 0};
    if (!exited && pidfd >= 0) fds[pid_idx = static_cast<int>(n++)] = {pidfd, POLLIN, 0};
    if (!exited && !stopping && opts.cancel_fd >= 0) fds[cancel_idx = static_cast<int>(n++)] = {opts.cancel_fd, POLLIN, 0};
    int pr = ::poll(fds, n, timeout_ms);
    if (pr < 0 && errno != EINTR) break;
    if (pr > 0 && out_idx >= 0 && (fds[out_idx].revents & (POLLIN | POLLHUP | POLLERR))) {
      char buf[65536];
      ssize_t got = ::read(pipefd[0], buf, sizeof buf);
      if (got > 0) {
        splitter.feed(buf, static_cast<std::size_t>(got));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        pipe_open = false;
      }
    }
    if (pr > 0 && cancel_idx >= 0 && (fds[cancel_idx].revents & (POLLIN | POLLHUP))) stop(false);
    if (!exited) {
      pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) {
        exited = true;
        drain_end = Clock::now() + std::chrono::milliseconds(stopping ? 100 : 500);
      }
    }
  }
  if (!exited) {  // poll failed: make sure nothing is left behind
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  if (stopping) ::kill(-pid, SIGKILL);  // stragglers of a stopped group
  splitter.flush();
  ::close(pipefd[0]);
  if (pidfd >= 0) ::close(pidfd);
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  return result;
}

std::string run_checked(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  ProcessOptions o;
  o.argv = argv;
  o.timeout = timeout;
  auto r = run_process(o);
  if (!r.ok()) {
    std::string tail;
    for (const auto& l : r.last_lines(8)) tail += "\n  " + l;
    throw std::runtime_error(fmt::format("`{}` {}{}", format_command(argv), r.describe(), tail));
  }
  return r.output;
}

}  // namespace sprout
