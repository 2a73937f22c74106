#include "nar_checksum.h"

#include <stdexcept>

#include <gtest/gtest.h>

namespace sprout {
namespace {

TEST(NarChecksum, IsXxh3Of128BitsInCanonicalHex) {
  // `printf abc | xxhsum -H2` (xxhash 0.8.1): 06b05ab6733a618578af5f94892f3950
  NarChecksum c;
  c.update("a", 1);
  c.update("bc", 2);
  EXPECT_EQ(c.hex(), "06b05ab6733a618578af5f94892f3950");
  EXPECT_EQ(NarChecksum().hex().size(), 32u);
}

TEST(NarChecksum, ParsesTheFileAndRefusesAnythingElse) {
  auto m = parse_nar_checksums("nar/a.nar 06b05ab6733a618578af5f94892f3950\nnar/b.nar 00000000000000000000000000000000\n");
  EXPECT_EQ(m.size(), 2u);
  EXPECT_EQ(m.at("nar/a.nar"), "06b05ab6733a618578af5f94892f3950");
  EXPECT_TRUE(parse_nar_checksums("").empty());
  for (const char* bad : {"nar/a.nar\n", " 06b05ab6733a618578af5f94892f3950\n", "nar/a.nar 06B05AB6733A618578AF5F94892F3950\n",
                          "nar/a.nar 06b05ab6\n",
                          "nar/a.nar 06b05ab6733a618578af5f94892f3950\nnar/a.nar 06b05ab6733a618578af5f94892f3950\n"})
    EXPECT_THROW(parse_nar_checksums(bad), std::runtime_error) << bad;
}

}  // namespace
}  // namespace sprout
