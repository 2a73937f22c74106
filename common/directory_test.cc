#include "directory.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

using namespace sprout;

namespace {
struct TempDir {
  std::filesystem::path root;
  TempDir() {
    char tmpl[] = "/tmp/sprout-dir-test-XXXXXX";
    root = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(root); }
  std::filesystem::path path(const std::string& p) const { return root / p.substr(1); }
  void write(const std::string& p, const std::string& text) const {
    std::filesystem::create_directories(path(p).parent_path());
    std::ofstream(path(p)) << text;
  }
};
}  // namespace

TEST(Directory, EnsureMakesEveryMissingLevel) {
  TempDir t;
  std::error_code ec;
  std::string dir = t.path("/etc/nixos/hosts/self").string();
  ensure_directory(dir, ec);
  EXPECT_FALSE(ec) << ec.message();
  struct stat st;
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  ensure_directory(dir, ec);  // already there
  EXPECT_FALSE(ec);
  ensure_directory(t.path("/root/.ssh/").string(), ec);  // trailing slash
  EXPECT_FALSE(ec);
  EXPECT_TRUE(std::filesystem::is_directory(t.path("/root/.ssh")));
}

TEST(Directory, EnsureRefusesAFileInTheWay) {
  TempDir t;
  t.write("/var/lib", "a file, not a directory");
  std::error_code ec;
  ensure_directory(t.path("/var/lib").string(), ec);
  EXPECT_EQ(ec, std::make_error_code(std::errc::not_a_directory));
  ensure_directory(t.path("/var/lib/sprout").string(), ec);
  EXPECT_EQ(ec, std::make_error_code(std::errc::not_a_directory));
  EXPECT_FALSE(std::filesystem::exists(t.path("/var/lib/sprout")));
}

