#include "cli/time_span.h"

#include <gtest/gtest.h>

#include "error.h"

namespace sprout {
namespace {

TEST(TimeSpan, BareNumbersAreSeconds) {
  EXPECT_EQ(parse_time_span("90", "timeout"), 90);
  EXPECT_EQ(parse_time_span("0", "timeout"), 0);
  EXPECT_EQ(parse_time_span("1.5", "timeout"), 1.5);
}

TEST(TimeSpan, UnitsAsSystemdWritesThem) {
  EXPECT_EQ(parse_time_span("1m", "timeout"), 60);  // not 1 second
  EXPECT_EQ(parse_time_span("5min", "timeout"), 300);
  EXPECT_EQ(parse_time_span("1h", "timeout"), 3600);
  EXPECT_EQ(parse_time_span("1h 30min", "timeout"), 5400);
  EXPECT_EQ(parse_time_span("1h30min", "timeout"), 5400);
  EXPECT_EQ(parse_time_span("2d", "timeout"), 172800);
  EXPECT_EQ(parse_time_span("500ms", "timeout"), 0.5);
  EXPECT_EQ(parse_time_span(" 90s ", "timeout"), 90);
  EXPECT_EQ(parse_time_span("3 hours", "timeout"), 10800);
}

TEST(TimeSpan, AnythingElseIsRefusedWhole) {
  for (const char* bad : {"", " ", "1x", "m", "1m5", "5 10", "-1", "1e10", "abc", "1.5.5s", "1h-2m"}) {
    try {
      parse_time_span(bad, "timeout");
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("--timeout"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace sprout
