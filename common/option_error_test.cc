#include "option_error.h"

#include <gtest/gtest.h>

namespace sprout {

TEST(OptionError, TypographicQuotesBecomePlainOnes) {
  EXPECT_EQ(option_error("sprout-agent", "Option \u2018bogus\u2019 does not exist"),
            "sprout-agent: Option 'bogus' does not exist (see `sprout-agent --help`)");
}

TEST(OptionError, AnUnexpectedWordIsQuoted) {
  EXPECT_EQ(unexpected_argument("sprout wait", "stray"),
            "sprout wait: unexpected argument 'stray' (see `sprout wait --help`)");
}

}  // namespace sprout
