#include "runtime/qemu_process.h"

#include <sys/wait.h>

#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "base/temp_dir.h"

namespace sprout {
namespace {

Spec spec_in(const std::filesystem::path& dir, int shutdown_timeout) {
  std::string text = R"({"version": 1, "name": "web", "base": {"image": "/b/base.qcow2"}, "stateDir": ")" +
                     dir.string() + R"(", "sources": {"config": "/c", "self": "/c/hosts/web"},
                     "shutdownTimeoutSeconds": )" + std::to_string(shutdown_timeout) + "}";
  return parse_spec(text, "test.json", "/etc/sprout/vms");
}

sigset_t no_signals() {
  sigset_t s;
  sigemptyset(&s);
  return s;
}

/// Reaps and ticks until the process has exited (bounded).
bool wait_exit(QemuProcess& q) {
  for (int i = 0; i < 3000 && !q.exited(); ++i) {
    q.tick(false);
    q.on_sigchld();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return q.exited();
}

TEST(QemuProcess, AProgramThatCannotStartCountsAsExit127WithItsReasonInTheLog) {
  TempDir d("qemu");
  Spec spec = spec_in(d.path(), 5);
  QemuProcess q(spec, {"/nonexistent/qemu-system-x86_64"}, 1);
  std::string why = q.start(no_signals());
  EXPECT_FALSE(why.empty());
  EXPECT_TRUE(q.exited());
  EXPECT_EQ(WEXITSTATUS(q.wait_status()), 127);
  ASSERT_EQ(q.log_tail(5).size(), 1u);
  EXPECT_NE(q.log_tail(5)[0].find("cannot start"), std::string::npos);
}

TEST(QemuProcess, StderrGoesToTheLogAndTheExitStatusIsKept) {
  TempDir d("qemu");
  Spec spec = spec_in(d.path(), 5);
  QemuProcess q(spec, {"/bin/sh", "-c", "echo one >&2; echo two >&2; exit 3"}, 1);
  ASSERT_EQ(q.start(no_signals()), "");
  ASSERT_TRUE(wait_exit(q));
  EXPECT_EQ(WEXITSTATUS(q.wait_status()), 3);
  EXPECT_EQ(q.log_tail(1), std::vector<std::string>{"two"});
}

TEST(QemuProcess, ItsInformationalLinesAreNoError) {
  TempDir d("qemu");
  Spec spec = spec_in(d.path(), 5);
  QemuProcess q(spec,
                {"/bin/sh", "-c",
                 "echo 'qemu-system-x86_64: -chardev socket,id=s: info: QEMU waiting for connection on: "
                 "disconnected:unix:/s/status.sock,server=on' >&2; echo 'qemu-system-x86_64: Could not open x' >&2; "
                 "exit 1"},
                1);
  ASSERT_EQ(q.start(no_signals()), "");
  ASSERT_TRUE(wait_exit(q));
  EXPECT_EQ(q.log_tail(5).size(), 2u);  // all of it, for the record
  EXPECT_EQ(q.log_tail(5, true), std::vector<std::string>{"qemu-system-x86_64: Could not open x"});
}

TEST(QemuProcess, TheStopSequenceQuitsAfterTheTimeoutThenKills) {
  TempDir d("qemu");
  Spec spec = spec_in(d.path(), 1);  // a second for the power button
  // A "qemu" without QMP that ignores SIGTERM: quit cannot reach it, only SIGKILL ends it.
  QemuProcess q(spec, {"/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"}, 0);
  ASSERT_EQ(q.start(no_signals()), "");
  EXPECT_EQ(q.request_stop(), QemuProcess::Stop::power_down);
  ASSERT_TRUE(wait_exit(q));
  EXPECT_EQ(q.stop(), QemuProcess::Stop::killed);
  ASSERT_TRUE(WIFSIGNALED(q.wait_status()));
  EXPECT_EQ(WTERMSIG(q.wait_status()), SIGKILL);
}

TEST(QemuProcess, ASecondStopRequestQuitsAtOnce) {
  TempDir d("qemu");
  Spec spec = spec_in(d.path(), 600);
  QemuProcess q(spec, {"/bin/sh", "-c", "while :; do sleep 0.1; done"}, 600);
  ASSERT_EQ(q.start(no_signals()), "");
  EXPECT_EQ(q.request_stop(), QemuProcess::Stop::power_down);
  EXPECT_EQ(q.request_stop(), QemuProcess::Stop::quit);  // no QMP: SIGTERM, which sh obeys
  ASSERT_TRUE(wait_exit(q));
  EXPECT_EQ(q.stop(), QemuProcess::Stop::quit);
  EXPECT_EQ(WTERMSIG(q.wait_status()), SIGTERM);
}

}  // namespace
}  // namespace sprout
