// take_global_options: --log-level before and after the command, `--` ends it.
#include "cli/global_options.h"

#include <gtest/gtest.h>

#include "error.h"

namespace sprout {
namespace {

using Args = std::vector<std::string>;

TEST(GlobalOptions, BeforeTheCommand) {
  Args a = {"--log-level", "debug", "status", "db"};
  EXPECT_EQ(take_global_options(a).log_level, "debug");
  EXPECT_EQ(a, (Args{"status", "db"}));
}

TEST(GlobalOptions, AfterTheCommandWithEquals) {
  Args a = {"wait", "db", "--log-level=warn", "--timeout", "5"};
  EXPECT_EQ(take_global_options(a).log_level, "warn");
  EXPECT_EQ(a, (Args{"wait", "db", "--timeout", "5"}));
}

TEST(GlobalOptions, LastOneWinsAndDefaultIsInfo) {
  Args none = {"status"};
  EXPECT_EQ(take_global_options(none).log_level, "info");
  Args a = {"--log-level", "debug", "status", "--log-level", "error"};
  EXPECT_EQ(take_global_options(a).log_level, "error");
  EXPECT_EQ(a, (Args{"status"}));
}

TEST(GlobalOptions, DoubleDashEndsTheOptions) {
  Args a = {"ssh", "db", "--", "--log-level", "debug"};
  EXPECT_EQ(take_global_options(a).log_level, "info");
  EXPECT_EQ(a, (Args{"ssh", "db", "--", "--log-level", "debug"}));
}

TEST(GlobalOptions, BadOrMissingLevelIsAnInputError) {
  Args bad = {"status", "--log-level", "loud"};
  EXPECT_THROW(take_global_options(bad), InputError);
  Args missing = {"status", "--log-level"};
  EXPECT_THROW(take_global_options(missing), InputError);
  Args before_dashes = {"status", "--log-level", "--", "x"};
  EXPECT_THROW(take_global_options(before_dashes), InputError);
}

}  // namespace
}  // namespace sprout
