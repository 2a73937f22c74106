#include "subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

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
