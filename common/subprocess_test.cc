#include "subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <thread>

#include <gtest/gtest.h>

using namespace sprout;
using namespace std::chrono_literals;

namespace {
// Alive and not a zombie (a zombie waits for a reaper that is not us).
bool running(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string comm_and_rest;
  if (!std::getline(stat, comm_and_rest)) return false;
  auto close = comm_and_rest.rfind(')');
  return close != std::string::npos && comm_and_rest.at(close + 2) != 'Z';
}

// Reads `fd` to its end and closes it.
std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}

// Runs `o` through spawn() with stdout into a pipe: its output, and its wait status
// in *status.
std::string spawn_output(SpawnOptions o, int* status = nullptr) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return "pipe failed";
  o.stdout_fd = p[1];
  Child c = spawn(o);
  ::close(p[1]);
  std::string out = read_all(p[0]);
  int st = -1;
  if (c) ::waitpid(c.pid, &st, 0);
  if (status) *status = st;
  return c ? out : "error: " + c.error;
}

// The child's signal mask and ignored signals, as /proc/self/status shows them.
std::string child_status_lines(SpawnOptions o) {
  o.argv = {"grep", "-E", "^(SigBlk|SigIgn):", "/proc/self/status"};
  return spawn_output(o);
}
}  // namespace

TEST(Subprocess, CapturesAndStreamsLines) {
  std::vector<std::string> lines;
  ProcessOptions o;
  o.argv = {"sh", "-c", "echo one; echo two >&2; printf three"};
  o.on_line = [&](std::string_view l) { lines.emplace_back(l); };
  auto r = run_process(o);
  EXPECT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(lines, (std::vector<std::string>{"one", "two", "three"}));
  EXPECT_EQ(r.last_lines(2), (std::vector<std::string>{"two", "three"}));
}

TEST(Subprocess, StdinFromADescriptor) {
  char path[] = "/tmp/sprout-stdin-XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, "fed\n", 4), 4);
  ASSERT_EQ(::lseek(fd, 0, SEEK_SET), 0);
  ::unlink(path);
  ProcessOptions o;
  o.argv = {"cat"};
  o.stdin_fd = fd;
  auto r = run_process(o);
  ::close(fd);
  EXPECT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.output, "fed\n");
  o.stdin_fd = -1;  // the default: /dev/null
  EXPECT_EQ(run_process(o).output, "");
}

TEST(Subprocess, NoShellInterpretation) {
  ProcessOptions o;
  o.argv = {"echo", "$HOME; rm -rf /"};
  auto r = run_process(o);
  EXPECT_EQ(r.output, "$HOME; rm -rf /\n");
}

TEST(Subprocess, ExitStatusAndSignal) {
  ProcessOptions o;
  o.argv = {"sh", "-c", "exit 3"};
  auto r = run_process(o);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.describe(), "exited with status 3");
  o.argv = {"sh", "-c", "kill -9 $$"};
  r = run_process(o);
  EXPECT_EQ(r.signal, SIGKILL);
  EXPECT_FALSE(r.ok());
}

TEST(Subprocess, MissingProgram) {
  ProcessOptions o;
  o.argv = {"/nonexistent/program"};
  auto r = run_process(o);
  EXPECT_FALSE(r.started);
  EXPECT_NE(r.describe().find("No such file"), std::string::npos);
}

TEST(Subprocess, TimeoutKillsTheWholeProcessGroup) {
  auto marker = std::filesystem::temp_directory_path() / ("sprout-sub-" + std::to_string(getpid()));
  ProcessOptions o;
  // The grandchild ignores SIGTERM and would outlive a naive kill of the child.
  o.argv = {"sh", "-c", "(trap '' TERM; sleep 30; touch " + marker.string() + ") & echo $!; wait"};
  o.timeout = 300ms;
  o.kill_grace = 200ms;
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_process(o);
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(r.timed_out);
  EXPECT_LT(took, 5s);
  pid_t grandchild = std::stoi(r.output);
  usleep(100000);
  EXPECT_FALSE(running(grandchild)) << "grandchild still alive";
  EXPECT_FALSE(std::filesystem::exists(marker));
}

TEST(Subprocess, CancelFdStopsTheChild) {
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  ASSERT_EQ(write(p[1], "x", 1), 1);
  ProcessOptions o;
  o.argv = {"sleep", "30"};
  o.cancel_fd = p[0];
  auto r = run_process(o);
  EXPECT_TRUE(r.cancelled);
  EXPECT_EQ(r.describe(), "was interrupted and stopped");
  close(p[0]);
  close(p[1]);
}

TEST(Subprocess, BackgroundedGrandchildHoldingThePipeDoesNotHang) {
  ProcessOptions o;
  o.argv = {"sh", "-c", "sleep 20 & echo done"};
  auto t0 = std::chrono::steady_clock::now();
  auto r = run_process(o);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.output, "done\n");
}

TEST(Subprocess, LongLinesAreSplit) {
  std::vector<std::string> lines;
  ProcessOptions o;
  o.argv = {"sh", "-c", "head -c 5000 /dev/zero | tr '\\0' a"};
  o.max_line_bytes = 2048;
  o.on_line = [&](std::string_view l) { lines.emplace_back(l); };
  run_process(o);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].size(), 2048u);
}

TEST(Subprocess, RunCheckedThrowsWithOutput) {
  try {
    run_checked({"sh", "-c", "echo oops; exit 1"});
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("oops"), std::string::npos);
  }
}

TEST(Subprocess, StderrCanGoElsewhere) {
  FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  ProcessOptions o;
  o.argv = {"sh", "-c", "echo data; echo chatter >&2"};
  o.stderr_fd = fileno(f);
  auto r = run_process(o);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.output, "data\n");
  char buf[64] = {};
  std::rewind(f);
  ASSERT_GT(std::fread(buf, 1, sizeof buf - 1, f), 0u);
  EXPECT_STREQ(buf, "chatter\n");
  std::fclose(f);
}

// A descriptor the parent opened without O_CLOEXEC (as libext2fs opens the images it
// writes) does not reach the program.
TEST(Subprocess, TheChildInheritsNoDescriptorOfOurs) {
  int fd = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC
  ASSERT_GE(fd, 3);
  ProcessOptions o;
  o.argv = {"sh", "-c", "test -e /proc/self/fd/" + std::to_string(fd) + " && echo inherited || echo closed"};
  auto r = run_process(o);
  ::close(fd);
  ASSERT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.output, "closed\n");
}

// The same for spawn(), which the supervisor starts qemu with.
TEST(Spawn, TheChildInheritsNoDescriptorOfOurs) {
  int fd = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC
  ASSERT_GE(fd, 3);
  SpawnOptions o;
  o.argv = {"sh", "-c", "test -e /proc/self/fd/" + std::to_string(fd) + " && echo inherited || echo closed"};
  int status = -1;
  EXPECT_EQ(spawn_output(o, &status), "closed\n");
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ::close(fd);
}

// A program that cannot be executed is spawn()'s error, naming it, not an exit 127.
TEST(Spawn, ExecFailureIsAnErrorNamingTheProgram) {
  SpawnOptions o;
  o.argv = {"/nonexistent/program"};
  Child c = spawn(o);
  EXPECT_FALSE(c);
  EXPECT_EQ(c.error, "/nonexistent/program: No such file or directory");
  o.argv = {"sprout-no-such-program-anywhere"};
  EXPECT_EQ(spawn(o).error, "sprout-no-such-program-anywhere: No such file or directory");
  // Found, but the exec fails (not executable): the child's errno comes back.
  auto file = std::filesystem::temp_directory_path() / ("sprout-spawn-" + std::to_string(getpid()));
  std::ofstream(file) << "not a program\n";
  ::chmod(file.c_str(), 0644);
  o.argv = {file.string()};
  c = spawn(o);
  std::filesystem::remove(file);
  EXPECT_FALSE(c);
  EXPECT_EQ(c.error, file.string() + ": Permission denied");
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1) << "a failed child left unreaped";
}

// Every handler back to its default, and the mask the caller asks for, whatever this
// process ignores or blocks (the supervisor blocks SIGTERM, SIGINT, SIGHUP and
// SIGCHLD for its signalfd; qemu must get them).
TEST(Spawn, SignalsAreTheChildsOwn) {
  struct sigaction ign {}, old_quit {}, old_usr1 {};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGQUIT, &ign, &old_quit);
  ::sigaction(SIGUSR1, &ign, &old_usr1);
  sigset_t block, old_mask;
  sigemptyset(&block);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&block, s);
  ::pthread_sigmask(SIG_BLOCK, &block, &old_mask);
  SpawnOptions o;
  const std::string nothing = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";
  EXPECT_EQ(child_status_lines(o), nothing);
  sigset_t usr2;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  o.signal_mask = usr2;
  EXPECT_EQ(child_status_lines(o), "SigBlk:\t0000000000000800\nSigIgn:\t0000000000000000\n");
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  ::sigaction(SIGQUIT, &old_quit, nullptr);
  ::sigaction(SIGUSR1, &old_usr1, nullptr);
}

TEST(Spawn, OwnProcessGroupStdinNullAndRedirections) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  SpawnOptions o;
  // Both streams into one pipe, which ends when sh becomes a sleep that keeps neither.
  o.argv = {"sh", "-c", "echo out; echo err >&2; readlink /proc/self/fd/0 >&2; exec sleep 30 >/dev/null 2>&1"};
  o.stdout_fd = o.stderr_fd = p[1];
  Child c = spawn(o);
  ::close(p[1]);
  ASSERT_TRUE(c) << c.error;
  EXPECT_EQ(read_all(p[0]), "out\nerr\n/dev/null\n");
  EXPECT_EQ(::getpgid(c.pid), c.pid);
  ::kill(c.pid, SIGKILL);
  ::waitpid(c.pid, nullptr, 0);
}

// PR_SET_PDEATHSIG: the child is killed when the thread that started it ends.
TEST(Spawn, TheChildDiesWithTheThreadThatStartedIt) {
  Child c;
  std::thread([&] {
    SpawnOptions o;
    o.argv = {"sleep", "30"};
    c = spawn(o);
  }).join();
  ASSERT_TRUE(c) << c.error;
  int status = 0;
  pid_t w = 0;
  for (int i = 0; i < 250 && (w = ::waitpid(c.pid, &status, WNOHANG)) == 0; ++i) usleep(20000);
  if (w == 0) {
    ::kill(c.pid, SIGKILL);
    ::waitpid(c.pid, &status, 0);
    FAIL() << "the child outlived the thread that started it";
  }
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

TEST(ExecArgv, ReplacesTheProcessOrThrowsNamingTheProgram) {
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    try {
      exec_argv({"sh", "-c", "exit 7"});
    } catch (...) {
    }
    ::_exit(99);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 7);
  try {
    exec_argv({"/nonexistent/program", "x"});
    FAIL() << "exec_argv returned";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code().value(), ENOENT);
    EXPECT_STREQ(e.what(), "cannot run /nonexistent/program: No such file or directory");
  }
}
