#include "atomic_file.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

using namespace sprout;
namespace fs = std::filesystem;

namespace {
fs::path scratch() {
  auto d = fs::temp_directory_path() / ("sprout-atomic-" + std::to_string(getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

TEST(AtomicFile, ReplacesContentAndMode) {
  auto d = scratch();
  write_file_atomic(d / "f", "one", 0600);
  write_file_atomic(d / "f", "two", 0640);
  EXPECT_EQ(slurp(d / "f"), "two");
  struct stat st;
  ASSERT_EQ(stat((d / "f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  // no temporary files left behind
  EXPECT_EQ(std::distance(fs::directory_iterator(d), fs::directory_iterator()), 1);
  fs::remove_all(d);
}

TEST(AtomicFile, PendingFileIsRemovedUnlessCommitted) {
  auto d = scratch();
  {
    PendingFile p(d / "img");
    std::ofstream(p.temp_path()) << "half";
  }
  EXPECT_FALSE(fs::exists(d / "img"));
  EXPECT_TRUE(fs::is_empty(d));
  {
    PendingFile p(d / "img");
    std::ofstream(p.temp_path()) << "whole";
    p.commit();
  }
  EXPECT_EQ(slurp(d / "img"), "whole");
  fs::remove_all(d);
}

TEST(AtomicFile, MissingDirectoryThrows) {
  EXPECT_THROW(write_file_atomic("/nonexistent-dir/x", "data"), std::system_error);
}
