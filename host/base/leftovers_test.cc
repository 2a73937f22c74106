#include "base/leftovers.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

using sprout::temporary_owner;
namespace fs = std::filesystem;

TEST(Leftovers, TemporaryNamesCarryTheirMakersPid) {
  EXPECT_EQ(temporary_owner(".root.qcow2.tmp-1234-1"), 1234);
  EXPECT_EQ(temporary_owner("..speculative-config.ext4.tmp-77-12"), 77);
  EXPECT_EQ(temporary_owner(".config.img.tmp-99"), 99);  // replace_symlink's links
  EXPECT_EQ(temporary_owner(".staging-4321-AbC123"), 4321);
}

TEST(Leftovers, NothingElseIsATemporary) {
  for (const char* name : {"root.qcow2", "root.qcow2.old-20261201-101010", "config-0123abcd.ext4", ".lock",
                           ".digest-cache", ".staging-AbC123", ".x.tmp-", ".x.tmp-0-1", ".x.tmp-12x",
                           "x.tmp-12-1", ".x.tmp-99999999999999999999-1"})
    EXPECT_FALSE(temporary_owner(name)) << name;
}

TEST(Leftovers, RemoveTreeRemovesReadOnlyDirectories) {
  fs::path top = fs::temp_directory_path() / ("leftovers-test-" + std::to_string(getpid()));
  fs::create_directories(top / "a" / "b");
  std::ofstream(top / "a" / "b" / "f") << "x";
  ::chmod((top / "a" / "b").c_str(), 0555);
  ::chmod((top / "a").c_str(), 0555);
  std::error_code ec;
  sprout::remove_tree(top, ec);
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(fs::exists(top));
}
