#include "status/record.h"

#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "base/temp_dir.h"

namespace sprout {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

void write(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

StatusRecord sample() {
  StatusRecord r;
  r.vm = "web";
  r.phase = Phase::rebuilding;
  r.since_ms = 17;
  r.updated_ms = 18;
  r.generation = "g1";
  r.message = "building";
  r.boot_id = "b1";
  r.seq = 4;
  r.guest_time_ms = 1700000000000;
  r.detail = json{{"attempt", 1}};
  r.last_log = {"copying path a", "copying path b"};
  r.reached = {Phase::starting, Phase::mounting, Phase::rebuilding};
  r.system = GuestSystem{"/nix/store/x-nixos-system", "host"};
  r.pending_generation = "g2";
  r.counters.accepted = 3;
  r.host.state = HostState::running;
  r.host.supervisor = ProcessIdentity{42, 1234};
  r.host.qemu_pid = 43;
  r.host.started_ms = 16;
  return r;
}

TEST(StatusRecord, WritesTheDocumentedFieldsAndReadsThemBack) {
  json j = sample().to_json();
  EXPECT_EQ(j["phase"], "rebuilding");
  EXPECT_EQ(j["reached"], (json{"starting", "mounting", "rebuilding"}));
  EXPECT_EQ(j["system"], (json{{"path", "/nix/store/x-nixos-system"}, {"by", "host"}}));
  EXPECT_EQ(j["host"], (json{{"state", "running"}, {"supervisor", 42}, {"supervisorStart", 1234}, {"pid", 43},
                             {"startedMs", 16}}));
  EXPECT_EQ(j["counters"]["accepted"], 3);
  EXPECT_EQ(StatusRecord::from_json(j).to_json(), j);
}

TEST(StatusRecord, AFreshRecordHasNullPhaseAndNoOptionalFields) {
  StatusRecord r;
  r.vm = "web";
  json j = r.to_json();
  EXPECT_TRUE(j["phase"].is_null());
  EXPECT_TRUE(j["detail"].is_null());
  EXPECT_EQ(j["host"], json::object());
  for (const char* k : {"system", "pendingGeneration", "guestTimeMs"}) EXPECT_FALSE(j.contains(k)) << k;
}

TEST(StatusRecord, MistypedAndUnknownFieldsReadAsEmpty) {
  json j{{"vm", "web"},         {"phase", "exploded"}, {"seq", -3},          {"message", 7},
         {"lastLog", {"a", 1}}, {"reached", {"mounting", "bogus", "log", "mounting"}},
         {"host", {{"state", "dancing"}, {"supervisor", "x"}, {"exit", 2}}}};
  StatusRecord r = StatusRecord::from_json(j);
  EXPECT_FALSE(r.phase);
  EXPECT_EQ(r.seq, 0u);
  EXPECT_EQ(r.message, "");
  EXPECT_EQ(r.last_log, std::vector<std::string>{"a"});
  EXPECT_EQ(r.reached, std::vector<Phase>{Phase::mounting});
  EXPECT_EQ(r.host.state, HostState::none);
  EXPECT_FALSE(r.host.supervisor);
  EXPECT_EQ(r.host.exit, 2);
}

TEST(StatusRecord, ReachedCountsPassedPhasesAndStarted) {
  StatusRecord r;
  EXPECT_FALSE(r.reached_phase("started"));
  r.host.state = HostState::running;  // the channel connected, nothing said yet
  EXPECT_TRUE(r.reached_phase("started"));
  r.host.state = HostState::starting;
  r.reached = {Phase::starting, Phase::rebuilding};
  r.phase = Phase::rebooting;
  EXPECT_TRUE(r.reached_phase("started"));
  EXPECT_TRUE(r.reached_phase("rebuilding"));
  EXPECT_TRUE(r.reached_phase("rebooting"));
  EXPECT_FALSE(r.reached_phase("specialized"));
  EXPECT_FALSE(r.reached_phase("no-such-phase"));
}

TEST(StatusRecord, NewestMessageIsTheLastLogLineWhileRebuilding) {
  StatusRecord r = sample();
  EXPECT_EQ(r.newest_message(), "copying path b");
  r.phase = Phase::failed;
  EXPECT_EQ(r.newest_message(), "building");
}

TEST(StatusRecord, ForDisplayEscapesWhatTheGuestChose) {
  StatusRecord r = sample();
  r.message = "evil\x1b]0;title\x07";
  r.last_log = {"\x1b[2J"};
  r.host.how = "qemu said: \x1b[31m";
  StatusRecord shown = r.for_display();
  for (const std::string& s : {shown.message, shown.last_log[0], shown.host.how})
    EXPECT_EQ(s.find('\x1b'), std::string::npos) << s;
  EXPECT_NE(r.message.find('\x1b'), std::string::npos);  // the record itself keeps what was sent
}

TEST(RecordFile, MissingCorruptAndOk) {
  TempDir d("record");
  fs::path p = d.path() / "status.json";
  EXPECT_EQ(read_record(p).state, RecordFile::missing);
  EXPECT_TRUE(read_record(p).to_json().is_null());
  write(p, "{\"vm\": \"web\", \"phase\": \"mount");
  RecordFile cut = read_record(p);
  EXPECT_EQ(cut.state, RecordFile::corrupt);
  EXPECT_NE(cut.corrupt_why.find(p.string()), std::string::npos) << cut.corrupt_why;
  write(p, "[1, 2]");
  EXPECT_EQ(read_record(p).state, RecordFile::corrupt);
  write(p, std::string(100, '[') + std::string(100, ']'));  // deeper than readers go
  EXPECT_EQ(read_record(p).state, RecordFile::corrupt);
  write(p, sample().to_json().dump());
  RecordFile ok = read_record(p);
  ASSERT_EQ(ok.state, RecordFile::ok);
  EXPECT_EQ(ok.record.to_json(), sample().to_json());
  EXPECT_EQ(ok.to_json(), sample().to_json());
}

}  // namespace
}  // namespace sprout
