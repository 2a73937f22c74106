#include "runtime/channel_recorder.h"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "base/temp_dir.h"
#include "status/record.h"
#include "status/run_state.h"

namespace sprout {
namespace {

Spec spec_in(const std::filesystem::path& dir) {
  std::string text = R"({"version": 1, "name": "web", "base": {"image": "/b/base.qcow2"}, "stateDir": ")" +
                     dir.string() + R"(", "sources": {"config": "/c", "self": "/c/hosts/web"}})";
  return parse_spec(text, "test.json", "/etc/sprout/vms");
}

/// A listening unix socket where qemu would make the status channel.
struct Listener {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  explicit Listener(const std::filesystem::path& p) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, p.c_str(), sizeof(a.sun_path) - 1);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd, 4), 0);
  }
  ~Listener() { ::close(fd); }
  int accept() const { return ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC); }
};

std::string line(Phase p, std::uint64_t seq) {
  StatusEvent e;
  e.vm = "web";
  e.boot_id = "b1";
  e.seq = seq;
  e.time_ms = 1700000000000;
  e.phase = p;
  e.message = "m";
  e.generation = "g1";
  return encode_status_line(e);
}

/// Ticks until `done` (the recorder never blocks; a bounded number of rounds).
template <class F>
bool tick_until(ChannelRecorder& c, F done) {
  for (int i = 0; i < 500 && !done(); ++i) {
    c.tick();
    if (c.fd() >= 0) c.on_readable();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

TEST(ChannelRecorder, ConnectsWhenTheSocketAppearsAndRecordsWhatArrives) {
  TempDir d("channel");
  Spec spec = spec_in(d.path());
  ChannelRecorder c(spec, ChannelRecorder::Mode::run, true);
  int first = 0;
  c.on_first_connection = [&] { ++first; };
  c.open();
  c.set_state(HostState::starting);
  c.tick();  // no socket yet: waits, no error
  EXPECT_FALSE(c.connected());
  Listener l(spec.status_socket());
  ASSERT_TRUE(tick_until(c, [&] { return c.connected(); }));
  EXPECT_EQ(first, 1);
  int peer = l.accept();
  std::string events = line(Phase::starting, 1) + line(Phase::specialized, 2);
  ASSERT_EQ(::write(peer, events.data(), events.size()), static_cast<ssize_t>(events.size()));
  ASSERT_TRUE(tick_until(c, [&] { return c.accepted() == 2; }));
  RecordFile f = read_record(spec.status_file());
  ASSERT_EQ(f.state, RecordFile::ok);
  EXPECT_EQ(f.record.phase, Phase::specialized);  // an outcome is written at once
  EXPECT_EQ(f.record.host.state, HostState::running);
  EXPECT_EQ(f.record.host.supervisor->pid, ::getpid());
  ::close(peer);
  c.close();
  c.set_stopped("guest powered off", 0);
  f = read_record(spec.status_file());
  EXPECT_EQ(f.record.host.state, HostState::stopped);
  EXPECT_EQ(f.record.host.exit, 0);
  EXPECT_FALSE(f.record.host.supervisor);
}

TEST(ChannelRecorder, AWatcherTellsANewRunByItsSocketAndKeepsItsOwnAcrossRestarts) {
  TempDir d("channel");
  Spec spec = spec_in(d.path());
  auto l = std::make_unique<Listener>(spec.status_socket());
  {
    ChannelRecorder c(spec, ChannelRecorder::Mode::watch, true);
    c.open();
    ASSERT_TRUE(tick_until(c, [&] { return c.connected(); }));
    int peer = l->accept();
    std::string e = line(Phase::rebuilding, 1);
    ASSERT_EQ(::write(peer, e.data(), e.size()), static_cast<ssize_t>(e.size()));
    ASSERT_TRUE(tick_until(c, [&] { return c.accepted() == 1; }));
    c.tick();
    ::close(peer);
    // The channel closing is the end of the run for a watcher.
    ASSERT_TRUE(tick_until(c, [&] { return read_record(spec.status_file()).record.host.state == HostState::waiting; }));
  }
  // A restarted watcher on the same socket continues the same run's record...
  {
    ChannelRecorder c(spec, ChannelRecorder::Mode::watch, true);
    c.open();
    ASSERT_TRUE(tick_until(c, [&] { return c.connected(); }));
    ::close(l->accept());
    EXPECT_EQ(read_record(spec.status_file()).record.phase, Phase::rebuilding);
  }
  // ...and one that finds another socket (qemu made a new one: a new run) starts afresh.
  l.reset();
  std::filesystem::remove(spec.status_socket());
  Listener again(spec.status_socket());
  ChannelRecorder c(spec, ChannelRecorder::Mode::watch, true);
  c.open();
  ASSERT_TRUE(tick_until(c, [&] { return c.connected(); }));
  ::close(again.accept());
  RecordFile f = read_record(spec.status_file());
  EXPECT_FALSE(f.record.phase);
  EXPECT_TRUE(f.record.host.watch);
  EXPECT_EQ(f.record.host.state, HostState::running);
}

/// A channel the test scripts: what open() finds, what read() returns (a libvirt
/// domain's channel behaves so: channel_source.h). Its descriptor is an eventfd kept
/// readable.
struct ScriptedSource : ChannelSource {
  Opened next_open{Opened::not_running, "not yet"};
  std::string identity, data, why_text;
  ChannelSource::Read after_data = Read::again;
  bool is_open = false;
  int efd = ::eventfd(1, EFD_CLOEXEC);
  ~ScriptedSource() override { ::close(efd); }
  Opened open() override {
    is_open = next_open.kind == Opened::open;
    return next_open;
  }
  std::string run_identity() const override { return is_open ? identity : ""; }
  int fd() const override { return is_open ? efd : -1; }
  Read read(std::string& out, std::size_t) override {
    if (!data.empty()) {
      out += data;
      data.clear();
      return Read::data;
    }
    Read r = after_data;
    if (r != Read::again) {
      is_open = false;
      after_data = Read::again;
    }
    return r;
  }
  void close() override { is_open = false; }
  std::string why() const override { return why_text; }
  std::string describe() const override { return "scripted channel"; }
  std::chrono::milliseconds max_backoff() const override { return std::chrono::milliseconds(20); }
};

HostState host_state(const Spec& spec) { return read_record(spec.status_file()).record.host.state; }

std::vector<std::string> host_events(const Spec& spec) {
  std::vector<std::string> out;
  std::ifstream in(spec.state_dir / "events.jsonl");
  for (std::string l; std::getline(in, l);) {
    auto j = nlohmann::json::parse(l);
    if (j.value("source", "") == "host") out.push_back(j.value("event", ""));
  }
  return out;
}

TEST(ChannelRecorder, AWatcherThatLosesTheChannelKeepsTheRunAndTellsAnEndedOneFromIt) {
  TempDir d("channel");
  Spec spec = spec_in(d.path());
  auto src = std::make_shared<ScriptedSource>();
  ChannelRecorder c(spec, ChannelRecorder::Mode::watch, true, src);
  c.open();
  src->next_open = {ChannelSource::Opened::open, ""};
  src->identity = "libvirt:u:1";
  ASSERT_TRUE(tick_until(c, [&] { return c.connected(); }));
  src->data = line(Phase::rebuilding, 1);
  ASSERT_TRUE(tick_until(c, [&] { return c.accepted() == 1; }));
  // Lost (libvirtd restarted): the record says reconnecting and stays live.
  src->after_data = ChannelSource::Read::lost;
  src->why_text = "lost it";
  src->next_open = {ChannelSource::Opened::unreachable, "libvirt is down"};
  ASSERT_TRUE(tick_until(c, [&] { return host_state(spec) == HostState::reconnecting; }));
  EXPECT_EQ(view_run(spec, read_record(spec.status_file())).state, RunView::live);
  // Back, the same run: the record goes on (its phase kept), no new run.
  src->next_open = {ChannelSource::Opened::open, ""};
  ASSERT_TRUE(tick_until(c, [&] { return host_state(spec) == HostState::running; }));
  EXPECT_EQ(read_record(spec.status_file()).record.phase, Phase::rebuilding);
  src->data = line(Phase::rebuilt, 2);
  ASSERT_TRUE(tick_until(c, [&] { return c.accepted() == 2; }));
  ASSERT_TRUE(tick_until(c, [&] { return read_record(spec.status_file()).record.phase == Phase::rebuilt; }));
  // Lost again, and the domain is found not running: its run ended meanwhile.
  src->after_data = ChannelSource::Read::lost;
  src->next_open = {ChannelSource::Opened::not_running, "domain web is not running"};
  ASSERT_TRUE(tick_until(c, [&] { return host_state(spec) == HostState::waiting; }));
  EXPECT_EQ(view_run(spec, read_record(spec.status_file())).state, RunView::ended);
  // A run that connects next is new, even with the identity the old one had (libvirtd
  // numbers domains afresh after a restart).
  src->next_open = {ChannelSource::Opened::open, ""};
  ASSERT_TRUE(tick_until(c, [&] { return host_state(spec) == HostState::running; }));
  EXPECT_FALSE(read_record(spec.status_file()).record.phase);
  // Ended (qemu closed the channel): the end of that run at once.
  src->after_data = ChannelSource::Read::ended;
  src->next_open = {ChannelSource::Opened::not_running, "domain web is not running"};
  ASSERT_TRUE(tick_until(c, [&] { return host_state(spec) == HostState::waiting; }));
  std::vector<std::string> want{"run-started", "channel-lost", "channel-back", "channel-lost",
                                "run-ended", "run-started", "run-ended"};
  EXPECT_EQ(host_events(spec), want);
}

TEST(ChannelRecorder, RecordsNothingWhenAnotherProcessRecords) {
  TempDir d("channel");
  Spec spec = spec_in(d.path());
  Listener l(spec.status_socket());
  ChannelRecorder c(spec, ChannelRecorder::Mode::run, false);
  c.open();
  c.set_state(HostState::running);
  c.tick();
  EXPECT_FALSE(c.connected());
  EXPECT_FALSE(std::filesystem::exists(spec.status_file()));
}

}  // namespace
}  // namespace sprout
