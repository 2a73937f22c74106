#include "status_protocol.h"

#include <gtest/gtest.h>

using namespace sprout;

namespace {
StatusEvent sample(Phase p = Phase::rebuilding) {
  StatusEvent e;
  e.vm = "web";
  e.boot_id = "b-1";
  e.seq = 7;
  e.time_ms = 1700000000123;
  e.phase = p;
  e.message = "building";
  e.generation = "abc";
  return e;
}
}  // namespace

TEST(StatusProtocol, RoundTripsEveryPhase) {
  for (auto name : {"starting", "mounting", "rebuilding", "log", "rebuilt", "rebooting", "specialized", "failed"}) {
    auto p = phase_from_name(name);
    ASSERT_TRUE(p) << name;
    auto line = encode_status_line(sample(*p));
    EXPECT_EQ(line.back(), '\n');
    auto d = decode_status_line(line);
    ASSERT_TRUE(d.event) << d.error;
    EXPECT_EQ(d.event->phase, *p);
    EXPECT_EQ(d.event->seq, 7u);
    EXPECT_EQ(d.event->vm, "web");
    EXPECT_EQ(d.event->time_ms, 1700000000123);
  }
}

TEST(StatusProtocol, DetailSurvives) {
  auto e = sample(Phase::specialized);
  e.detail = {{"timingsUs", {{"find", 12}}}};
  auto d = decode_status_line(encode_status_line(e));
  ASSERT_TRUE(d.event);
  EXPECT_EQ(d.event->detail["timingsUs"]["find"], 12);
}

TEST(StatusProtocol, LongMessagesAreShortenedToFit) {
  auto e = sample(Phase::log);
  e.message = std::string(10000, '"');  // escaping doubles its size
  e.detail = {{"big", std::string(5000, 'x')}};
  auto line = encode_status_line(e);
  EXPECT_LE(line.size(), kMaxStatusLineBytes);
  auto d = decode_status_line(line);
  ASSERT_TRUE(d.event) << d.error;
  EXPECT_EQ(d.event->detail["truncated"], true);
}

TEST(StatusProtocol, InvalidUtf8FromOutputIsReplacedNotFatal) {
  auto e = sample(Phase::log);
  e.message = "bad \xff\xfe bytes";
  auto d = decode_status_line(encode_status_line(e));
  ASSERT_TRUE(d.event) << d.error;
}

TEST(StatusProtocol, GarbageIsRejectedWithoutThrowing) {
  const std::string good = encode_status_line(sample());
  std::vector<std::string> bad = {
      "", "\n", "not json", "{", "[]", "42", "\xff\xfe{}", std::string(5000, 'a'),
      R"({"version":2,"vm":"web","bootId":"b","seq":1,"timeMs":1,"phase":"log","message":"","generation":""})",
      R"({"version":1,"vm":"web","bootId":"b","seq":-1,"timeMs":1,"phase":"log","message":"","generation":""})",
      R"({"version":1,"vm":"web","bootId":"b","seq":1,"timeMs":1,"phase":"dancing","message":"","generation":""})",
      R"({"version":1,"vm":"../x","bootId":"b","seq":1,"timeMs":1,"phase":"log","message":"","generation":""})",
      R"({"version":1,"vm":"web","bootId":"b","seq":1,"timeMs":1,"phase":"log","message":"","generation":"","x":1})",
      R"({"version":1,"vm":"web","bootId":"b","seq":1,"timeMs":1,"phase":"log","message":3,"generation":""})",
      good.substr(0, good.size() / 2),
  };
  for (const auto& line : bad) {
    DecodedStatus d;
    EXPECT_NO_THROW(d = decode_status_line(line));
    EXPECT_FALSE(d.event) << line;
    EXPECT_FALSE(d.error.empty()) << line;
  }
}

TEST(StatusProtocol, Utf8Validation) {
  EXPECT_TRUE(is_valid_utf8("plain"));
  EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8c\xb1"));
  EXPECT_FALSE(is_valid_utf8("\xc3"));          // truncated
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));      // overlong
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));  // surrogate
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_EQ(utf8_truncate("\xc3\xa9\xc3\xa9", 3), "\xc3\xa9");
}

TEST(StatusProtocol, ReadAsStrictlyAsEveryOtherDocumentNamingTheField) {
  auto error_of = [](const std::string& line) {
    auto d = decode_status_line(line + "\n");
    EXPECT_FALSE(d.event) << line;
    return d.error;
  };
  const std::string ok = R"({"version":1,"vm":"web","bootId":"b","seq":1,"timeMs":1,"phase":"starting","message":"m","generation":"g")";
  ASSERT_TRUE(decode_status_line(ok + "}\n").event);
  // A repeated key is refused, not resolved silently in favour of one of them.
  EXPECT_NE(error_of(ok + R"(,"phase":"specialized"})").find("appears twice"), std::string::npos);
  EXPECT_NE(error_of(ok + R"(,"extra":1})").find("extra: unknown key"), std::string::npos);
  auto e = error_of(R"({"version":1,"vm":"web","bootId":"b","seq":-1,"timeMs":1,"phase":"starting","message":"m","generation":"g"})");
  EXPECT_EQ(e.rfind("seq: expected an integer from 0", 0), 0u) << e;
  EXPECT_NE(error_of(ok + R"(,"detail":[1]})").find("detail: expected an object"), std::string::npos);
  EXPECT_NE(error_of(R"({"version":2})").find("version: unsupported protocol version 2"), std::string::npos);
  EXPECT_NE(error_of(R"({"version":1,"vm":"web","bootId":"b","seq":1,"timeMs":1,"phase":"bogus","message":"m","generation":"g"})")
                .find("phase: is not a phase"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"version":1e999})").find("number overflow"), std::string::npos);
  // Nesting as deep as a line's 4096 bytes allow is refused by the parser, like any
  // other document of sprout's nested more than 64 deep, not walked.
  EXPECT_EQ(error_of(std::string(2000, '[') + std::string(2000, ']')),
            "lists and objects nested more than 64 deep; sprout reads no JSON that deep");
  EXPECT_EQ(error_of(ok + ",\"detail\":" + std::string(1900, '[') + std::string(1900, ']') + "}"),
            "lists and objects nested more than 64 deep; sprout reads no JSON that deep");
  // The whole range of seq.
  auto d = decode_status_line(R"({"version":1,"vm":"web","bootId":"b","seq":18446744073709551615,"timeMs":1,"phase":"log","message":"m","generation":"g"})"
                              "\n");
  ASSERT_TRUE(d.event) << d.error;
  EXPECT_EQ(d.event->seq, UINT64_MAX);
}
