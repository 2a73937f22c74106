#include "strict_json.h"

#include <gtest/gtest.h>

using namespace sprout;
using nlohmann::json;

namespace {
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(StrictJson, NamesSourcePathAndExpectation) {
  json j = json::parse(R"({"a": {"b": "x"}})");
  auto msg = error_of([&] {
    StrictObject o(j, "f.json");
    auto a = o.object("a");
    a.integer("b", 0, 10);
  });
  EXPECT_EQ(msg, "f.json: a.b: expected an integer from 0 to 10, got the string \"x\"");
}

TEST(StrictJson, UnknownKeysAreRejected) {
  json j = json::parse(R"({"known": 1, "typo": 2})");
  auto msg = error_of([&] {
    StrictObject o(j, "f.json");
    o.integer_or("known", 0, 0, 5);
    o.finish();
  });
  EXPECT_NE(msg.find("f.json: typo: unknown key"), std::string::npos) << msg;
}

TEST(StrictJson, MissingAndChoices) {
  json j = json::parse(R"({"mode": "fast"})");
  EXPECT_NE(error_of([&] { StrictObject(j, "s").string("name"); }).find("got nothing (the key is missing)"),
            std::string::npos);
  EXPECT_EQ(error_of([&] { StrictObject(j, "s").choice_or("mode", {"a", "b", "c"}, "a"); }),
            "s: mode: expected \"a\", \"b\" or \"c\", got the string \"fast\"");
}

TEST(StrictJson, ParseErrorsNameTheSource) {
  auto msg = error_of([] { parse_json_text("{\"a\": ", "spec.json"); });
  EXPECT_NE(msg.find("spec.json: not valid JSON"), std::string::npos) << msg;
}

TEST(StrictJson, SyntaxErrorsGiveLineColumnAndWhatWasExpected) {
  auto msg = error_of([] { parse_json_text("{\"version\": 1,\n \"name\": w}", "syntax.json"); });
  EXPECT_EQ(msg.find("syntax.json: not valid JSON at line 2, column"), 0u) << msg;
  EXPECT_NE(msg.find("invalid literal"), std::string::npos) << msg;
  msg = error_of([] { parse_json_text("{\"a\": 1,}", "s.json"); });
  EXPECT_NE(msg.find("expected string literal"), std::string::npos) << msg;
}

TEST(StrictJson, NumbersTooBigAreInputErrors) {
  auto msg = error_of([] { parse_json_text("{\"memory\": 1e400}", "big.json"); });
  EXPECT_EQ(msg, "big.json: not valid JSON: number overflow parsing '1e400'");
}

TEST(StrictJson, DuplicateKeysAreRefused) {
  EXPECT_EQ(error_of([] { parse_json_text("{\"vcpus\": 2, \"vcpus\": 1}", "d.json"); }),
            "d.json: the key \"vcpus\" appears twice in one object; keep one");
  // The same key in different objects is fine.
  EXPECT_EQ(error_of([] { parse_json_text("{\"a\": {\"x\": 1}, \"b\": {\"x\": 2}}", "ok.json"); }), "");
}

TEST(StrictJson, NulInStringsIsRefused) {
  EXPECT_EQ(error_of([] { parse_json_text("{\"sources\": {\"config\": \"/a\\u0000b\"}}", "n.json"); }),
            "n.json: sources.config: contains a NUL character, which no path, name or argument may hold");
  EXPECT_NE(error_of([] { parse_json_text("{\"args\": [\"ok\", \"x\\u0000\"]}", "n.json"); }).find("args[1]"),
            std::string::npos);
}

TEST(StrictJson, ListsOfStrings) {
  json j = json::parse(R"({"l": ["a", 2]})");
  EXPECT_EQ(error_of([&] { StrictObject(j, "s").strings_or_empty("l"); }),
            "s: l[1]: expected a string, got the number 2");
}

namespace {
std::string nested(std::size_t depth, std::string_view open, std::string_view inner, std::string_view close) {
  std::string s;
  for (std::size_t i = 0; i < depth; ++i) s += open;
  s += inner;
  for (std::size_t i = 0; i < depth; ++i) s += close;
  return s;
}
TEST(NearestWord, SuggestsOnlyWhatIsNearEnough) {
  const std::vector<std::string> commands = {"list", "status", "wait", "watch"};
  EXPECT_EQ(nearest_word("stauts", commands), "status");
  EXPECT_EQ(nearest_word("wiat", commands), "wait");  // a swap is one edit
  EXPECT_EQ(nearest_word("frobnicate", commands), "");
  EXPECT_EQ(nearest_word("x", {}), "");
}

}  // namespace

// 100,000 nested lists overflowed the stack of every reader (a recursive walk of the
// parsed document); they are refused while parsing, strict or loose, naming the source.
TEST(StrictJson, NestingDeeperThanTheLimitIsRefusedNamingTheSource) {
  const std::string expected = "deep.json: lists and objects nested more than 64 deep; sprout reads no JSON that deep";
  for (const auto& text : {nested(100000, "[", "", "]"), nested(100000, "{\"a\":", "1", "}"),
                           nested(100000, "[{\"a\":", "1", "}]"), nested(kMaxJsonDepth + 1, "[", "", "]"),
                           nested(100000, "[", "", "")}) {
    EXPECT_EQ(error_of([&] { parse_json_text(text, "deep.json"); }), expected) << text.substr(0, 20);
    EXPECT_EQ(error_of([&] { parse_json_loosely(text, "deep.json"); }), expected) << text.substr(0, 20);
    EXPECT_THROW(parse_json_loosely(text, "deep.json"), JsonTooDeep);
  }
  // Up to the limit is fine, and brackets inside strings do not count.
  EXPECT_EQ(error_of([] { parse_json_text(nested(kMaxJsonDepth, "[", "", "]"), "ok.json"); }), "");
  EXPECT_EQ(error_of([] { parse_json_text(nested(kMaxJsonDepth - 1, "{\"a\":", "\"[[[[{{{{\"", "}"), "ok.json"); }),
            "");
  EXPECT_EQ(error_of([] { parse_json_loosely(nested(kMaxJsonDepth, "[", "", "]"), "ok.json"); }), "");
}

TEST(StrictJson, LooseParsingKeepsTheLastOfARepeatedKey) {
  EXPECT_EQ(parse_json_loosely("{\"a\": 1, \"a\": 2}", "l.json")["a"], 2);
  EXPECT_NE(error_of([] { parse_json_loosely("{\"a\": ", "l.json"); }).find("l.json: not valid JSON at line 1"),
            std::string::npos);
}
