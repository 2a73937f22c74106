#include "whole_file.h"

#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

namespace sprout {
namespace {

TEST(WholeFile, ReadsExactlyAndBoundedWithoutFollowingALink) {
  char tmpl[] = "/tmp/sprout-whole-file-XXXXXX";
  std::filesystem::path dir = ::mkdtemp(tmpl);
  std::ofstream(dir / "f", std::ios::binary) << std::string("a\0b\n", 4);
  WholeFile f = read_whole_file(dir / "f", 4);
  EXPECT_TRUE(f);
  EXPECT_EQ(f.text, std::string("a\0b\n", 4));
  WholeFile big = read_whole_file(dir / "f", 3);
  EXPECT_FALSE(big);
  EXPECT_TRUE(big.too_large);
  EXPECT_EQ(big.why(3), "larger than 3 bytes");
  std::filesystem::create_symlink(dir / "f", dir / "link");
  EXPECT_EQ(read_whole_file(dir / "link", 4).error, ELOOP);
  WholeFile none = read_whole_file(dir / "none", 4);
  EXPECT_EQ(none.error, ENOENT);
  EXPECT_EQ(none.why(4), "No such file or directory");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sprout
