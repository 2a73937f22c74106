#include "subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "line_splitter.h"

extern char** environ;

namespace sprout {

namespace {

using Clock = std::chrono::steady_clock;

int pidfd_open_compat(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// The child's output: captured (the last max_capture_bytes) and split into lines.
class OutputSink {
 public:
  OutputSink(const ProcessOptions& o, ProcessResult& r)
      : opts_(o), result_(r), lines_(o.max_line_bytes, LineSplitter::Overlong::split) {}
  void feed(const char* data, std::size_t n) {
    if (opts_.capture) {
      result_.output.append(data, n);
      if (result_.output.size() > opts_.max_capture_bytes)
        result_.output.erase(0, result_.output.size() - opts_.max_capture_bytes);
    }
    if (opts_.on_line) lines_.feed(std::string_view(data, n), opts_.on_line);
  }
  void flush() {
    if (opts_.on_line) lines_.finish(opts_.on_line);
  }

 private:
  const ProcessOptions& opts_;
  ProcessResult& result_;
  LineSplitter lines_;
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

/// The executable `name` resolves to with PATH from `env` (as execvp would), or "".
std::string find_in_path(const std::string& name, const std::vector<std::string>& env) {
  if (name.find('/') != std::string::npos) return name;
  std::string path = "/usr/local/bin:/usr/bin:/bin";
  for (const auto& e : env)
    if (e.rfind("PATH=", 0) == 0) path = e.substr(5);
  std::size_t from = 0;
  for (;;) {
    std::size_t colon = path.find(':', from);
    std::string dir = path.substr(from, colon == std::string::npos ? std::string::npos : colon - from);
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string::npos) return "";
    from = colon + 1;
  }
}

}  // namespace

std::string find_program(const std::string& program) {
  const char* path = ::getenv("PATH");
  return find_in_path(program, {path ? std::string("PATH=") + path : std::string()});
}

std::string format_command(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    // Quoted unless every byte is one no shell treats specially.
    static constexpr std::string_view kPlain =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-";
    if (a.empty() || a.find_first_not_of(kPlain) != std::string::npos) {
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
  if (!error.empty()) return error;
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

  std::vector<char*> argv;
  for (const auto& a : opts.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  auto env_strings = build_env(opts.env);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  // The executable is looked up before fork: the child only calls async-signal-safe
  // functions (this process may have other threads).
  std::string exe = find_in_path(opts.argv[0], env_strings);
  if (exe.empty()) {
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    result.error = fmt::format("{}: {}", opts.argv[0], std::strerror(ENOENT));
    return result;
  }
  // The child reports a failed exec through this pipe (closed on a successful exec).
  int errpipe[2];
  if (::pipe2(errpipe, O_CLOEXEC) != 0) {
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    result.error = fmt::format("pipe: {}", std::strerror(errno));
    return result;
  }
  pid_t parent = ::getpid();
  // No handler of ours may run in the child before it resets them.
  sigset_t all, old_mask;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old_mask);
  pid_t pid = ::fork();
  if (pid != 0) ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  if (pid == 0) {
    // Dies with the thread that waits for it, however sprout dies (kill -9 too).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);  // own process group: a timeout stops all of it
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
    sigset_t empty;
    sigemptyset(&empty);
    ::sigprocmask(SIG_SETMASK, &empty, nullptr);
    if (opts.stdin_null) {
      int null = ::open("/dev/null", O_RDONLY);
      if (null >= 0 && null != 0) {
        ::dup2(null, 0);
        ::close(null);
      }
    }
    // (When sprout was started with stdout or stderr closed, the pipe may be fd 1 or
    // 2 itself: dup2 onto itself keeps close-on-exec, so clear it.)
    for (int fd : {1, 2}) {
      if (fd == 2 && opts.stderr_fd >= 0)
        opts.stderr_fd == 2 ? ::fcntl(2, F_SETFD, 0) : ::dup2(opts.stderr_fd, 2);
      else if (pipefd[1] == fd)
        ::fcntl(fd, F_SETFD, 0);
      else
        ::dup2(pipefd[1], fd);
    }
    // Nothing else of ours reaches the program: descriptors opened without
    // O_CLOEXEC (libext2fs opens images that way, on other threads) close at exec.
    ::syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC);
    ::execve(exe.c_str(), argv.data(), envp.data());
    int err = errno;
    (void)!::write(errpipe[1], &err, sizeof err);
    ::_exit(127);
  }
  ::close(pipefd[1]);
  ::close(errpipe[1]);
  if (pid < 0) {
    int err = errno;
    ::close(pipefd[0]);
    ::close(errpipe[0]);
    result.error = fmt::format("fork: {}", std::strerror(err));
    return result;
  }
  int exec_errno = 0;
  ssize_t got_err;
  while ((got_err = ::read(errpipe[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR) {
  }
  ::close(errpipe[0]);
  if (got_err == static_cast<ssize_t>(sizeof exec_errno)) {
    int st;
    ::waitpid(pid, &st, 0);
    ::close(pipefd[0]);
    result.error = fmt::format("{}: {}", opts.argv[0], std::strerror(exec_errno));
    return result;
  }
  result.started = true;

  int pidfd = pidfd_open_compat(pid);
  OutputSink splitter(opts, result);
  const auto start = Clock::now();
  std::optional<Clock::time_point> deadline;
  if (opts.timeout.count() > 0) deadline = start + opts.timeout;
  std::optional<Clock::time_point> kill_at;    // SIGKILL after grace
  std::optional<Clock::time_point> drain_end;  // after exit: stop waiting for the pipe
  bool exited = false, pipe_open = true, stopping = false, lost = false;
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
      if (w == pid || (w < 0 && errno == ECHILD)) {
        // ECHILD: somebody else reaped it (SIGCHLD ignored): its status is lost.
        lost = w < 0;
        exited = true;
        drain_end = Clock::now() + std::chrono::milliseconds(stopping ? 100 : 500);
      }
    }
  }
  if (!exited) {  // poll failed: make sure nothing is left behind
    ::kill(-pid, SIGKILL);
    if (::waitpid(pid, &status, 0) < 0) lost = true;
  }
  if (stopping) ::kill(-pid, SIGKILL);  // stragglers of a stopped group
  splitter.flush();
  ::close(pipefd[0]);
  if (pidfd >= 0) ::close(pidfd);
  if (lost) {
    result.error = "its exit status was lost (was SIGCHLD ignored?)";
    return result;
  }
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
