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

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

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

namespace {

// What the child needs, all made before fork: between fork and exec the child calls
// only async-signal-safe functions.
struct ChildSetup {
  std::string exe;
  std::vector<char*> argv, envp;
  sigset_t mask;
  bool stdin_null;
  int stdin_fd;
  bool detach;
  bool interactive;
  int stdout_fd, stderr_fd;
  int error_fd;  // the exec's errno goes here (close-on-exec: EOF when it succeeds)
  pid_t parent;
};

// A descriptor among 0-2 that the redirections could overwrite, moved above them.
int above_stdio(int fd) { return fd >= 0 && fd < 3 ? ::fcntl(fd, F_DUPFD_CLOEXEC, 3) : fd; }

[[noreturn]] void exec_child(const ChildSetup& c) {
  if (c.detach) {
    ::setsid();  // a session of its own: no terminal's hangup or Ctrl-C reaches it
  } else {
    // Dies with the thread that started it, however sprout dies (kill -9 too).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != c.parent) ::_exit(127);
    // Own process group (stopping it reaches all of it), unless it is the terminal's
    // program: then it stays in the foreground group, so it reads the terminal and
    // gets its Ctrl-C.
    if (!c.interactive) ::setpgid(0, 0);
  }
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
  ::sigprocmask(SIG_SETMASK, &c.mask, nullptr);
  // (When sprout was started with 0, 1 or 2 closed, a descriptor of ours may be one
  // of them.)
  const int error_fd = above_stdio(c.error_fd), out = above_stdio(c.stdout_fd), err = above_stdio(c.stderr_fd);
  const int in = above_stdio(c.stdin_fd);
  if (c.stdin_fd >= 0) {
    if (in < 0 || ::dup2(in, 0) != 0) {  // never run the program with another stdin than asked
      int e = errno;
      (void)!::write(error_fd, &e, sizeof e);
      ::_exit(127);
    }
  } else if (c.stdin_null) {
    int null = ::open("/dev/null", O_RDONLY);
    if (null > 0) {
      ::dup2(null, 0);
      ::close(null);
    }
  }
  if (out >= 0) ::dup2(out, 1);
  if (err >= 0) ::dup2(err, 2);
  // Nothing else of ours reaches the program: descriptors opened without
  // O_CLOEXEC (libext2fs opens images that way, on other threads) close at exec.
  ::syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC);
  ::execve(c.exe.c_str(), c.argv.data(), c.envp.data());
  int e = errno;
  (void)!::write(error_fd, &e, sizeof e);
  ::_exit(127);
}

// Forks the child of `c` and waits until its exec succeeded (the error pipe closes)
// or failed (its errno arrives; the child is reaped).
Child fork_child(ChildSetup& c, const std::string& program) {
  Child child;
  int errpipe[2];
  if (::pipe2(errpipe, O_CLOEXEC) != 0) {
    child.error = fmt::format("{}: pipe: {}", program, std::strerror(errno));
    return child;
  }
  c.error_fd = errpipe[1];
  c.parent = ::getpid();
  // No handler of ours may run in the child before it resets them.
  sigset_t all, old_mask;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old_mask);
  pid_t pid = ::fork();
  if (pid == 0) exec_child(c);
  const int fork_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::close(errpipe[1]);
  if (pid < 0) {
    ::close(errpipe[0]);
    child.error = fmt::format("{}: fork: {}", program, std::strerror(fork_errno));
    return child;
  }
  int exec_errno = 0;
  ssize_t got;
  while ((got = ::read(errpipe[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR) {
  }
  ::close(errpipe[0]);
  if (got == static_cast<ssize_t>(sizeof exec_errno)) {
    int st;
    while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    child.error = fmt::format("{}: {}", program, std::strerror(exec_errno));
    return child;
  }
  child.pid = pid;
  return child;
}

// Stays with a started child: its output into the sink, the timeout and cancel_fd
// (either stops its process group: SIGTERM, then SIGKILL after the grace), its exit
// status.
class ChildWait {
 public:
  ChildWait(const ProcessOptions& o, ProcessResult& r, pid_t pid, int out_fd)
      : opts_(o), result_(r), sink_(o, r), pid_(pid), out_fd_(out_fd), pidfd_(pidfd_open_compat(pid)) {
    if (o.timeout.count() > 0) deadline_ = Clock::now() + o.timeout;
  }
  ChildWait(const ChildWait&) = delete;
  ChildWait& operator=(const ChildWait&) = delete;
  ~ChildWait() {
    if (pidfd_ >= 0) ::close(pidfd_);
  }
  void run();

 private:
  void stop(bool timed_out);
  void act_on_deadlines(Clock::time_point now);
  int poll_timeout_ms(Clock::time_point now) const;
  bool poll_once(Clock::time_point now);
  void check_exit();
  void finish();

  const ProcessOptions& opts_;
  ProcessResult& result_;
  OutputSink sink_;
  const pid_t pid_;
  const int out_fd_, pidfd_;
  std::optional<Clock::time_point> deadline_;
  std::optional<Clock::time_point> kill_at_;    // SIGKILL after grace
  std::optional<Clock::time_point> drain_end_;  // after exit: stop waiting for the pipe
  bool exited_ = false, pipe_open_ = true, stopping_ = false, lost_ = false;
  int status_ = 0;
};

void ChildWait::run() {
  while (!exited_ || (pipe_open_ && Clock::now() < *drain_end_)) {
    const auto now = Clock::now();
    act_on_deadlines(now);
    if (!poll_once(now)) break;
    check_exit();
  }
  finish();
}

void ChildWait::stop(bool timed_out) {
  if (stopping_) return;
  stopping_ = true;
  result_.timed_out = timed_out;
  result_.cancelled = !timed_out;
  ::kill(-pid_, SIGTERM);
  kill_at_ = Clock::now() + opts_.kill_grace;
}

void ChildWait::act_on_deadlines(Clock::time_point now) {
  if (!exited_ && !stopping_ && deadline_ && now >= *deadline_) stop(true);
  if (!exited_ && kill_at_ && now >= *kill_at_) {
    ::kill(-pid_, SIGKILL);
    kill_at_.reset();
  }
}

int ChildWait::poll_timeout_ms(Clock::time_point now) const {
  std::optional<Clock::time_point> wake;
  auto consider = [&](std::optional<Clock::time_point> t) {
    if (t && (!wake || *t < *wake)) wake = t;
  };
  if (!exited_ && !stopping_) consider(deadline_);
  if (!exited_) consider(kill_at_);
  if (exited_) consider(drain_end_);
  int timeout_ms = 200;  // also bounds the pidfd-less fallback's polling
  if (wake) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*wake - now).count() + 1;
    timeout_ms = static_cast<int>(std::clamp<long long>(ms, 0, 200));
  }
  return timeout_ms;
}

// One wait for output, the child's exit or cancellation; false when poll failed.
bool ChildWait::poll_once(Clock::time_point now) {
  pollfd fds[3];
  nfds_t n = 0;
  int out_idx = -1, cancel_idx = -1;
  if (pipe_open_) fds[out_idx = static_cast<int>(n++)] = {out_fd_, POLLIN, 0};
  if (!exited_ && pidfd_ >= 0) fds[n++] = {pidfd_, POLLIN, 0};
  if (!exited_ && !stopping_ && opts_.cancel_fd >= 0) fds[cancel_idx = static_cast<int>(n++)] = {opts_.cancel_fd, POLLIN, 0};
  int pr = ::poll(fds, n, poll_timeout_ms(now));
  if (pr < 0 && errno != EINTR) return false;
  if (pr > 0 && out_idx >= 0 && (fds[out_idx].revents & (POLLIN | POLLHUP | POLLERR))) {
    char buf[65536];
    ssize_t got = ::read(out_fd_, buf, sizeof buf);
    if (got > 0) {
      sink_.feed(buf, static_cast<std::size_t>(got));
    } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
      pipe_open_ = false;
    }
  }
  if (pr > 0 && cancel_idx >= 0 && (fds[cancel_idx].revents & (POLLIN | POLLHUP))) stop(false);
  return true;
}

void ChildWait::check_exit() {
  if (exited_) return;
  pid_t w = ::waitpid(pid_, &status_, WNOHANG);
  if (w == pid_ || (w < 0 && errno == ECHILD)) {
    // ECHILD: somebody else reaped it (SIGCHLD ignored): its status is lost.
    lost_ = w < 0;
    exited_ = true;
    drain_end_ = Clock::now() + std::chrono::milliseconds(stopping_ ? 100 : 500);
  }
}

void ChildWait::finish() {
  if (!exited_) {  // poll failed: make sure nothing is left behind
    ::kill(-pid_, SIGKILL);
    if (::waitpid(pid_, &status_, 0) < 0) lost_ = true;
  }
  if (stopping_) ::kill(-pid_, SIGKILL);  // stragglers of a stopped group
  sink_.flush();
  if (lost_) {
    result_.error = "its exit status was lost (was SIGCHLD ignored?)";
    return;
  }
  if (WIFEXITED(status_)) result_.exit_code = WEXITSTATUS(status_);
  if (WIFSIGNALED(status_)) result_.signal = WTERMSIG(status_);
}

}  // namespace

Child spawn(const SpawnOptions& o) {
  Child child;
  if (o.argv.empty()) {
    child.error = "empty command";
    return child;
  }
  const std::string& program = o.argv[0];
  ChildSetup c;
  auto env_strings = build_env(o.env);
  // The executable is looked up before fork, with the child's PATH.
  c.exe = find_in_path(program, env_strings);
  if (c.exe.empty()) {
    child.error = fmt::format("{}: {}", program, std::strerror(ENOENT));
    return child;
  }
  for (const auto& a : o.argv) c.argv.push_back(const_cast<char*>(a.c_str()));
  c.argv.push_back(nullptr);
  for (auto& e : env_strings) c.envp.push_back(e.data());
  c.envp.push_back(nullptr);
  if (o.signal_mask)
    c.mask = *o.signal_mask;
  else
    sigemptyset(&c.mask);
  c.stdin_null = o.stdin_null;
  c.stdin_fd = o.stdin_fd;
  c.detach = o.detach;
  c.interactive = o.interactive;
  c.stdout_fd = o.stdout_fd;
  c.stderr_fd = o.stderr_fd;
  return fork_child(c, program);
}

void exec_argv(const std::vector<std::string>& argv) {
  if (argv.empty()) throw std::system_error(EINVAL, std::generic_category(), "cannot run an empty command");
  std::vector<char*> c;
  for (const auto& a : argv) c.push_back(const_cast<char*>(a.c_str()));
  c.push_back(nullptr);
  ::execvp(c[0], c.data());
  throw std::system_error(errno, std::generic_category(), "cannot run " + argv[0]);
}

ProcessResult run_process(const ProcessOptions& opts) {
  ProcessResult result;
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    result.error = fmt::format("pipe: {}", std::strerror(errno));
    return result;
  }
  SpawnOptions so;
  so.argv = opts.argv;
  so.env = opts.env;
  so.stdin_null = opts.stdin_null;
  so.stdin_fd = opts.stdin_fd;
  so.stdout_fd = pipefd[1];
  so.stderr_fd = opts.stderr_fd >= 0 ? opts.stderr_fd : pipefd[1];
  Child child = spawn(so);
  ::close(pipefd[1]);
  if (child) {
    result.started = true;
    ChildWait(opts, result, child.pid, pipefd[0]).run();
  } else {
    result.error = child.error;
  }
  ::close(pipefd[0]);
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
