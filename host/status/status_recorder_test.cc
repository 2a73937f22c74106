#include "status/status_recorder.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace sprout {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/sprout-rec-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

std::string line(Phase p, std::uint64_t seq, const std::string& msg = "m", const std::string& vm = "web") {
  StatusEvent e;
  e.vm = vm;
  e.boot_id = "b1";
  e.seq = seq;
  e.time_ms = 1700000000000;
  e.phase = p;
  e.message = msg;
  e.generation = "gen1";
  return encode_status_line(e);
}

/// status.json as JSON, through the record type that reads and writes it.
json read_status_file(const fs::path& p) { return read_record(p).to_json(); }

std::size_t count_lines(const fs::path& p) {
  std::ifstream in(p);
  std::size_t n = 0;
  std::string l;
  while (std::getline(in, l)) ++n;
  return n;
}

TEST(StatusRecorder, RecordsPhasesAndLogs) {
  TempDir d;
  StatusStore store(d.path);
  StatusRecorder rec("web", store);
  rec.on_connect();
  std::string all = line(Phase::starting, 1) + line(Phase::rebuilding, 2, "building") + line(Phase::log, 3, "copying path");
  // byte by byte: framing must not depend on chunking
  for (char c : all) rec.on_data(std::string_view(&c, 1));
  rec.flush();
  json st = read_status_file(store.status_path());
  EXPECT_EQ(st["phase"], "rebuilding");
  EXPECT_EQ(st["message"], "building");
  EXPECT_EQ(st["generation"], "gen1");
  EXPECT_EQ(st["lastLog"].back(), "copying path");
  EXPECT_EQ(st["counters"]["accepted"], 3);
  EXPECT_EQ(count_lines(store.events_path()), 3u);
  rec.on_data(line(Phase::specialized, 4, "done"));
  st = read_status_file(store.status_path());  // an outcome is written at once
  EXPECT_EQ(st["phase"], "specialized");
}

TEST(StatusRecorder, KeepsTheSystemTheGuestRunsAndWhoBuiltIt) {
  TempDir d;
  StatusStore store(d.path);
  StatusRecorder rec("web", store);
  rec.on_connect();
  StatusEvent e;
  e.vm = "web";
  e.boot_id = "b1";
  e.seq = 1;
  e.phase = Phase::specialized;
  e.message = "specialized";
  e.detail = json{{"currentSystem", "/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-nixos-system-web"},
                  {"specializedBy", "host"}};
  rec.on_data(encode_status_line(e));
  e.boot_id = "b2";
  e.phase = Phase::starting;
  e.detail = json::object();
  rec.on_data(encode_status_line(e));  // a later boot's phase does not forget it
  rec.flush();
  json st = read_status_file(store.status_path());
  EXPECT_EQ(st["phase"], "starting");
  EXPECT_EQ(st["system"]["path"], "/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-nixos-system-web");
  EXPECT_EQ(st["system"]["by"], "host");
  // Anything but the two known words (an older agent sends none) is "guest".
  e.boot_id = "b3";
  e.phase = Phase::specialized;
  e.detail = json{{"currentSystem", std::string(2000, 'x')}, {"specializedBy", "\u001b[31mhost"}};
  rec.on_data(encode_status_line(e));
  st = read_status_file(store.status_path());
  EXPECT_EQ(st["system"]["by"], "guest");
  EXPECT_LE(st["system"]["path"].get<std::string>().size(), 512u);
}

TEST(StatusRecorder, AnotherVmsEventsAreRecordedButDoNotMoveThePhase) {
  TempDir d;
  StatusStore store(d.path);
  StatusRecorder rec("web", store);
  int seen = 0;
  rec.on_event = [&](const StatusEvent&) { ++seen; };
  rec.on_data(line(Phase::starting, 1, "up", "unknown"));  // before the manifest: counts
  rec.on_data(line(Phase::specialized, 2, "done", "db"));  // db's disks on web: does not
  rec.flush();  // (coalesced, as run and watch flush when due)
  json st = read_status_file(store.status_path());
  EXPECT_EQ(st["phase"], "starting");
  EXPECT_NE(st["message"].get<std::string>().find("reports that it is VM 'db'"), std::string::npos);
  EXPECT_EQ(st["counters"]["wrongVm"], 1);
  EXPECT_EQ(seen, 1);
  EXPECT_EQ(count_lines(store.events_path()), 2u);
}

TEST(StatusRecorder, ABogusJumpDoesNotHideLaterGaps) {
  TempDir d;
  StatusStore store(d.path);
  StatusRecorder rec("web", store);
  rec.on_data(line(Phase::starting, 1));
  rec.on_data(line(Phase::mounting, 18446744073709551615ull));  // a jump: not losses
  rec.on_data(line(Phase::mounting, 2));
  rec.on_data(line(Phase::mounting, 5));  // 3 and 4 are lost
  rec.flush();
  EXPECT_EQ(read_status_file(store.status_path())["counters"]["seqGaps"], 2);
}

TEST(StatusRecorder, SequenceGapsAreCounted) {
  TempDir d;
  StatusStore store(d.path);
  StatusRecorder rec("web", store);
  rec.on_data(line(Phase::starting, 0) + line(Phase::mounting, 1) + line(Phase::rebuilding, 4));
  rec.flush();
  EXPECT_EQ(read_status_file(store.status_path())["counters"]["seqGaps"], 2);
}

TEST(StatusRecorder, GarbageInvalidUtf8AndOverlongAreCountedNotFatal) {
  TempDir d;
  StatusStore store(d.path);
  StatusRecorder rec("web", store);
  rec.on_data("not json at all\n");
  rec.on_data("{\"version\": 1}\n");
  rec.on_data(std::string("\xff\xfe garbage\n"));
  rec.on_data(std::string(10000, 'x'));  // over-long, no newline yet
  rec.on_data(std::string(10000, 'y') + "\n");
  rec.on_data(line(Phase::starting, 1));
  rec.on_data("\n\n");
  rec.on_data("partial");
  rec.on_disconnect();
  rec.flush();
  json st = read_status_file(store.status_path());
  EXPECT_EQ(st["phase"], "starting");
  EXPECT_EQ(st["counters"]["garbage"], 3);  // two bad lines + the partial one
  EXPECT_EQ(st["counters"]["invalidUtf8"], 1);
  EXPECT_EQ(st["counters"]["overlong"], 1);
  EXPECT_EQ(st["counters"]["accepted"], 1);
  EXPECT_EQ(count_lines(store.events_path()), 1u);
}

TEST(StatusRecorder, FloodIsThinnedButPhasesKept) {
  TempDir d;
  StatusStore store(d.path, {.max_events_bytes = 64 << 10});
  RecorderOptions o;
  o.log_burst = 50;
  o.log_lines_per_second = 1;
  StatusRecorder rec("web", store, o);
  std::string flood;
  for (int i = 0; i < 20000; ++i) flood += line(Phase::log, i + 1, "line " + std::to_string(i));
  rec.on_data(flood);
  rec.on_data(line(Phase::specialized, 30000, "done"));
  rec.flush();
  json st = read_status_file(store.status_path());
  EXPECT_EQ(st["phase"], "specialized");
  EXPECT_GE(st["counters"]["thinned"].get<int>(), 19000);
  EXPECT_EQ(st["lastLog"].size(), 10u);
  EXPECT_EQ(st["lastLog"].back(), "line 19999");
}

TEST(StatusStore, RotatesEvents) {
  TempDir d;
  StatusStore store(d.path, {.max_events_bytes = 4096});
  for (int i = 0; i < 200; ++i) store.append_event(json{{"i", i}, {"pad", std::string(100, 'p')}});
  EXPECT_GE(store.rotations(), 1u);
  EXPECT_LE(fs::file_size(store.events_path()), 4096u);
  EXPECT_LE(fs::file_size(d.path / "events.jsonl.1"), 4096u);
}

TEST(StatusRecorder, ResumeKeepsPhaseAndWrongVmFlagged) {
  TempDir d;
  StatusStore store(d.path);
  StatusRecorder rec("web", store);
  rec.resume_from(StatusRecord::from_json(json{{"phase", "rebuilding"}, {"generation", "g0"}, {"lastLog", {"a"}}}));
  rec.on_data(line(Phase::log, 5, "b", "other"));  // another VM's line: flagged, not this VM's log
  rec.on_data(line(Phase::log, 6, "c"));
  rec.flush();
  json st = read_status_file(store.status_path());
  EXPECT_EQ(st["phase"], "rebuilding");
  EXPECT_EQ(st["counters"]["wrongVm"], 1);
  EXPECT_EQ(st["lastLog"], (json{"a", "c"}));
}

}  // namespace
}  // namespace sprout
