#include "status_channel.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "test_tree.h"

using namespace sprout::agent;
using sprout::Phase;
using sprout::agent::testing::TempTree;

namespace {
std::string drain(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}
int count_lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }
}  // namespace

TEST(StatusChannel, HoldsUntilNameKnownThenSendsInOrderAndLogs) {
  TempTree t;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  StatusChannel ch(sv[0], t.path("/log/agent.log"), "boot-1");
  ch.send(Phase::starting, "hello");
  EXPECT_EQ(drain(sv[1]), "");
  ch.set_vm("web");
  ch.send(Phase::mounting, "m");
  std::string got = drain(sv[1]);
  ASSERT_EQ(count_lines(got), 2);
  auto first = sprout::decode_status_line(got.substr(0, got.find('\n') + 1));
  ASSERT_TRUE(first.event) << first.error;
  EXPECT_EQ(first.event->vm, "web");
  EXPECT_EQ(first.event->phase, Phase::starting);
  EXPECT_EQ(first.event->seq, 1u);
  EXPECT_EQ(count_lines(t.read("/log/agent.log")), 2);
  ::close(sv[1]);
}

TEST(StatusChannel, NoListenerNeverBlocksQueueBoundedFlushBounded) {
  TempTree t;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  int small = 4096;
  ::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  StatusChannel ch(sv[0], t.path("/agent.log"), "b", 64);
  ch.set_vm("web");
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 5000; ++i) ch.send(Phase::log, "line " + std::to_string(i) + std::string(200, 'x'));
  ch.send(Phase::failed, "the end");
  EXPECT_LE(ch.queued(), 65u);
  EXPECT_GT(ch.dropped(), 0u);
  EXPECT_FALSE(ch.flush(std::chrono::milliseconds(300)));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(ms, 3000);
  // Every event is in the local log, even the dropped ones.
  EXPECT_EQ(count_lines(t.read("/agent.log")), 5001);
  // A reader shows up: the rest, ending with the terminal event, gets through.
  std::string got;
  for (int i = 0; i < 200 && ch.queued() > 0; ++i) {
    got += drain(sv[1]);
    ch.flush(std::chrono::milliseconds(10));
  }
  got += drain(sv[1]);
  EXPECT_EQ(ch.queued(), 0u);
  EXPECT_NE(got.find("the end"), std::string::npos);
  ::close(sv[1]);
}

TEST(StatusChannel, HangupDoesNotSpinOrHang) {
  TempTree t;
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  ::close(sv[1]);  // POLLHUP, EPIPE
  signal(SIGPIPE, SIG_IGN);
  StatusChannel ch(sv[0], "", "b");
  ch.set_vm("web");
  ch.send(Phase::specialized, "x");
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(ch.flush(std::chrono::milliseconds(300)));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GE(ms, 250);
  EXPECT_LT(ms, 1500);
}

TEST(StatusChannel, NoPortAtAllIsFine) {
  TempTree t;
  StatusChannel ch(-1, t.path("/agent.log"), "b");
  ch.send(Phase::starting, "x");
  EXPECT_TRUE(ch.flush(std::chrono::milliseconds(1000)));
  EXPECT_EQ(count_lines(t.read("/agent.log")), 1);
}

TEST(StatusChannel, FindsPortByName) {
  TempTree t;
  t.write("/sys/class/virtio-ports/vport1p1/name", "other\n");
  t.write("/sys/class/virtio-ports/vport2p1/name", "sprout.status.0\n");
  t.write("/dev/vport2p1", "");
  EXPECT_EQ(find_virtio_port(t.root(), "sprout.status.0"), "/dev/vport2p1");
  EXPECT_EQ(find_virtio_port(t.root(), "nope"), "");
}

TEST(StatusChannel, PrefersUdevsPortLink) {
  TempTree t;
  t.write("/sys/class/virtio-ports/vport2p1/name", "sprout.status.0\n");
  t.write("/dev/vport2p1", "");
  t.symlink("../vport2p1", "/dev/virtio-ports/sprout.status.0");
  EXPECT_EQ(find_virtio_port(t.root(), "sprout.status.0"), "/dev/virtio-ports/sprout.status.0");
  t.symlink("../vport9p1", "/dev/virtio-ports/dangling");  // a dangling link is no port
  EXPECT_EQ(find_virtio_port(t.root(), "dangling"), "");
}
