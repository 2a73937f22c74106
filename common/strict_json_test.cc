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

TEST(StrictJson, ListsOfStrings) {
  json j = json::parse(R"({"l": ["a", 2]})");
  EXPECT_EQ(error_of([&] { StrictObject(j, "s").strings_or_empty("l"); }),
            "s: l[1]: expected a string, got the number 2");
}
