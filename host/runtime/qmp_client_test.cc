// The QMP client never waits: these tests run the client and a fake qemu in one
// thread, so a client that blocked for qemu's answer could never get it.
#include "runtime/qmp_client.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

namespace sprout {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// qemu's side of the QMP socket, driven by the test.
class FakeQemu {
 public:
  FakeQemu() {
    char tmpl[] = "/tmp/qmp-test-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    path_ = dir_ / "qmp.sock";
    listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path_.c_str());
    EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listen_fd_, 4), 0);
  }
  ~FakeQemu() {
    if (conn_ >= 0) ::close(conn_);
    ::close(listen_fd_);
    fs::remove_all(dir_);
  }
  const fs::path& path() const { return path_; }
  void accept() { conn_ = ::accept(listen_fd_, nullptr, nullptr); ASSERT_GE(conn_, 0); }
  void say(const std::string& line) { ASSERT_EQ(::write(conn_, line.data(), line.size()), static_cast<ssize_t>(line.size())); }
  // One line the client wrote (it is there: the client wrote it before this is called).
  std::string heard() {
    std::string line;
    char c;
    while (::read(conn_, &c, 1) == 1 && c != '\n') line += c;
    return line;
  }
  void hang_up() { ::close(conn_); conn_ = -1; }

 private:
  fs::path dir_, path_;
  int listen_fd_ = -1;
  int conn_ = -1;
};

// What poll says about the client's descriptor now (no waiting).
short ready_events(const QmpClient& c) {
  pollfd p{c.fd(), c.poll_events(), 0};
  return ::poll(&p, 1, 0) > 0 ? p.revents : 0;
}

constexpr const char* kGreeting = R"({"QMP": {"version": {}, "capabilities": []}})" "\n";
constexpr const char* kCapabilities = R"({"execute":"qmp_capabilities"})";

void start(FakeQemu& q, QmpClient& c) {
  std::string err;
  ASSERT_TRUE(c.start(q.path(), 2000ms, &err)) << err;
}

// qemu accepts and greets; the client asks for capabilities.
void greet(FakeQemu& q, QmpClient& c) {
  q.accept();
  q.say(kGreeting);
  c.handle(POLLIN);
  ASSERT_EQ(q.heard(), kCapabilities);
}

void negotiate(FakeQemu& q, QmpClient& c) {
  start(q, c);
  greet(q, c);
  q.say(R"({"return": {}})" "\n");
  c.handle(POLLIN);
  ASSERT_TRUE(c.ready());
}

TEST(QmpClient, StartReturnsBeforeQemuAnswers) {
  FakeQemu q;
  QmpClient c;
  // qemu has not even accepted yet: the client is under way, not waiting.
  start(q, c);
  EXPECT_TRUE(c.active());
  EXPECT_FALSE(c.ready());
  EXPECT_FALSE(c.send("quit")) << "commands before the handshake is done";
  EXPECT_TRUE(c.deadline().has_value());
  q.accept();
  EXPECT_TRUE(c.handle(ready_events(c)).empty());  // nothing said yet
  q.say(std::string(R"({"event": "RESET"})" "\n") + kGreeting);  // what comes before the greeting is skipped
  EXPECT_TRUE(c.handle(POLLIN).empty());
  EXPECT_EQ(q.heard(), kCapabilities);
  q.say(R"({"return": {}})" "\n");
  EXPECT_TRUE(c.handle(POLLIN).empty());
  EXPECT_TRUE(c.ready());
  EXPECT_FALSE(c.deadline().has_value());
  ASSERT_TRUE(c.send("system_powerdown"));
  EXPECT_EQ(q.heard(), R"({"execute":"system_powerdown"})");
  q.say(R"({"return": {}})" "\n" R"({"event": "POWERDOWN", "timestamp": {}})" "\n");
  auto msgs = c.handle(POLLIN);
  ASSERT_EQ(msgs.size(), 2u);
  EXPECT_EQ(msgs[1]["event"], "POWERDOWN");
  EXPECT_TRUE(c.lost().empty());
}

TEST(QmpClient, NoGreetingEndsAtTheDeadline) {
  FakeQemu q;  // listens, never accepts nor says anything
  QmpClient c;
  start(q, c);
  EXPECT_EQ(ready_events(c), 0);
  EXPECT_FALSE(c.expire(QmpClient::Clock::now()));
  EXPECT_TRUE(c.expire(*c.deadline() + 1ms));
  EXPECT_FALSE(c.active());
  EXPECT_NE(c.lost().find("no QMP greeting"), std::string::npos) << c.lost();
  EXPECT_FALSE(c.lost_after_ready());
}

TEST(QmpClient, NoAnswerToCapabilitiesEndsAtTheDeadline) {
  FakeQemu q;
  QmpClient c;
  start(q, c);
  greet(q, c);
  EXPECT_TRUE(c.expire(*c.deadline()));
  EXPECT_NE(c.lost().find("qmp_capabilities"), std::string::npos) << c.lost();
}

TEST(QmpClient, WritesQemuDoesNotReadAreQueuedThenGiveUp) {
  FakeQemu q;
  QmpClient c;
  negotiate(q, c);
  // qemu stops reading: sends queue up (the socket buffer fills), none waits.
  int sent = 0;
  while (!(c.poll_events() & POLLOUT) && sent < 1'000'000) {
    ASSERT_TRUE(c.send("query-status", 2000ms));
    ++sent;
  }
  ASSERT_TRUE(c.poll_events() & POLLOUT) << "the socket never filled";
  EXPECT_TRUE(c.send("quit")) << "queued behind the rest";
  EXPECT_EQ(ready_events(c) & POLLOUT, 0);  // poll would not wake the loop for it
  ASSERT_TRUE(c.deadline().has_value());
  EXPECT_TRUE(c.expire(*c.deadline()));
  EXPECT_FALSE(c.active());
  EXPECT_TRUE(c.lost_after_ready());
  EXPECT_TRUE(c.lost_unsent());
  EXPECT_NE(c.lost().find("does not read"), std::string::npos) << c.lost();
}

TEST(QmpClient, QemuClosing) {
  FakeQemu q;
  QmpClient c;
  negotiate(q, c);
  ASSERT_TRUE(c.send("quit"));
  q.hang_up();
  c.handle(ready_events(c));
  EXPECT_FALSE(c.active());
  EXPECT_TRUE(c.lost_after_ready());
  EXPECT_FALSE(c.lost_unsent());
}

TEST(QmpClient, AFloodOfRepliesIsTakenInBoundedBites) {
  FakeQemu q;
  QmpClient c;
  negotiate(q, c);
  // More messages than one handle() takes (an escaped qemu streaming events).
  std::string flood;
  for (std::size_t i = 0; i < QmpClient::kMaxMessagesPerCall + 500; ++i)
    flood += R"({"event": "X", "data": {}})" "\n";
  q.say(flood);
  c.handle(POLLIN);
  EXPECT_TRUE(ready_events(c) & POLLIN) << "one call drained the whole flood";
  for (int i = 0; i < 10 && (ready_events(c) & POLLIN); ++i) c.handle(POLLIN);
  EXPECT_FALSE(ready_events(c) & POLLIN);
  EXPECT_TRUE(c.active());
}

TEST(QmpClient, NobodyListening) {
  QmpClient c;
  std::string err;
  EXPECT_FALSE(c.start("/nonexistent/qmp.sock", 2000ms, &err));
  EXPECT_NE(err.find("/nonexistent/qmp.sock"), std::string::npos);
  EXPECT_FALSE(c.active());
}

}  // namespace
}  // namespace sprout
