#include "image/nix_store.h"

#include <gtest/gtest.h>

using namespace sprout;

// Output of Debian's nix 2.8 `nix-store --dump-db` for two paths.
const char* kDump =
    "/nix/store/ny0x7p9361ghg01qmp02xjdzp00mns2l-lib1\n"
    "d15fb63fab5800c914338b08e3d91dc10d27d4e22f6df38afd13bd7225f76017\n"
    "288\n"
    "/nix/store/5vagmd93pif6ssn8hx7cplfn32jlhp21-lib1.drv\n"
    "0\n"
    "/nix/store/9ykcfql8b7811yf3sgrij9ahyfplya1x-nixos-system-base\n"
    "f845b736ad6886ec9e22fec27f0d8c809a2a60f2fb4a798e1dc0e32663f24003\n"
    "720\n"
    "\n"
    "1\n"
    "/nix/store/ny0x7p9361ghg01qmp02xjdzp00mns2l-lib1\n";

TEST(NixStore, ParsesDumpDb) {
  auto rs = parse_dump_db(kDump);
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].path, "/nix/store/ny0x7p9361ghg01qmp02xjdzp00mns2l-lib1");
  EXPECT_EQ(rs[0].nar_hash, "sha256:d15fb63fab5800c914338b08e3d91dc10d27d4e22f6df38afd13bd7225f76017");
  EXPECT_EQ(rs[0].nar_size, 288u);
  EXPECT_TRUE(rs[0].references.empty());
  EXPECT_EQ(rs[1].deriver, "");
  ASSERT_EQ(rs[1].references.size(), 1u);
  EXPECT_EQ(rs[1].references[0], rs[0].path);
}

TEST(NixStore, RefusesTruncatedOrGarbledDumps) {
  std::string text = kDump;
  EXPECT_THROW(parse_dump_db(text.substr(0, text.size() - 50)), std::runtime_error);
  std::string bad = text;
  bad.replace(bad.find("288"), 3, "2x8");
  EXPECT_THROW(parse_dump_db(bad), std::runtime_error);
  EXPECT_THROW(parse_dump_db("relative/path\nh\n1\n\n0\n"), std::runtime_error);
  EXPECT_TRUE(parse_dump_db("").empty());
}

TEST(NixStore, AbsentPathNarinfoNamesItsReferencesByBaseName) {
  auto rs = parse_dump_db(kDump);
  auto text = narinfo_for_absent_path(rs[1]);
  EXPECT_EQ(text,
            "StorePath: /nix/store/9ykcfql8b7811yf3sgrij9ahyfplya1x-nixos-system-base\n"
            "URL: nar/in-the-base-system-not-on-this-disk.nar\n"
            "Compression: none\n"
            "NarHash: sha256:f845b736ad6886ec9e22fec27f0d8c809a2a60f2fb4a798e1dc0e32663f24003\n"
            "NarSize: 720\n"
            "References: ny0x7p9361ghg01qmp02xjdzp00mns2l-lib1\n");
  EXPECT_NE(narinfo_for_absent_path(rs[0]).find("Deriver: 5vagmd93pif6ssn8hx7cplfn32jlhp21-lib1.drv\n"),
            std::string::npos);
}
