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
  const std::string h = "sha256:" + std::string(64, 'a');
  auto m = parse_nar_checksums("nar/a.nar 06b05ab6733a618578af5f94892f3950 " + h +
                               "\nnar/b.nar 00000000000000000000000000000000 " + h + "\n");
  EXPECT_EQ(m.size(), 2u);
  EXPECT_EQ(m.at("nar/a.nar").xxh3, "06b05ab6733a618578af5f94892f3950");
  EXPECT_EQ(m.at("nar/a.nar").nar_hash, h);
  EXPECT_TRUE(parse_nar_checksums("").empty());
  const std::string x = " 06b05ab6733a618578af5f94892f3950";
  for (std::string bad : {"nar/a.nar" + x + "\n", x + " " + h + "\n", "nar/a.nar 06B05AB6733A618578AF5F94892F3950 " + h,
                          "nar/a.nar 06b05ab6 " + h, "nar/a.nar" + x + " md5:00", "nar/a.nar" + x + " " + h + " extra",
                          "nar/a.nar" + x + " " + h + "\nnar/a.nar" + x + " " + h + "\n"})
    EXPECT_THROW(parse_nar_checksums(bad), std::runtime_error) << bad;
}

}  // namespace
}  // namespace sprout
