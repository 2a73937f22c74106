// The persistent content-hash cache: what it trusts, what it forgets, and that a
// damaged file only costs a rehash.
#include "image/digest_cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "base/temp_dir.h"

using namespace sprout;
namespace fs = std::filesystem;

namespace {

class DigestCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    src = base / "src";
    cache = base / "cache";
    fs::create_directories(src);
    fs::create_directories(cache);
  }

  /// A file with timestamps old enough to be trusted.
  struct stat old_file(const std::string& rel, const std::string& text) {
    std::ofstream(src / rel) << text;
    struct stat st;
    lstat((src / rel).c_str(), &st);
    st.st_mtim.tv_sec -= 3600;  // as if last changed an hour ago (ctime too)
    st.st_ctim.tv_sec -= 3600;
    return st;
  }
  /// Files a and b, hashed h1 and h2 by a first run whose cache was saved.
  std::pair<struct stat, struct stat> saved_two_files() {
    auto a = old_file("a", "1"), b = old_file("b", "2");
    DigestCacheFile c(cache, src);
    c.store("a", a, h1);
    c.store("b", b, h2);
    c.save();
    return {a, b};
  }
  fs::path cache_file() {
    for (const auto& e : fs::directory_iterator(cache / ".digest-cache")) return e.path();
    return {};
  }
  std::string read(const fs::path& p) {
    std::stringstream ss;
    ss << std::ifstream(p).rdbuf();
    return ss.str();
  }

  TempDir tmp{"digest-cache"};
  fs::path base = tmp.path();
  fs::path src, cache;
  const std::string h1 = std::string(64, 'a'), h2 = std::string(64, 'b');
};

TEST_F(DigestCacheTest, RemembersAcrossRunsWhileStatIsUnchanged) {
  auto a = old_file("a", "1"), b = old_file("b", "2");
  {
    DigestCacheFile c(cache, src);
    EXPECT_EQ(c.known_files(), 0u);
    EXPECT_FALSE(c.lookup("a", a));
    c.store("a", a, h1);
    c.store("b", b, h2);
    c.save();
  }
  DigestCacheFile c(cache, src);
  EXPECT_EQ(c.known_files(), 2u);
  EXPECT_EQ(c.lookup("a", a), h1);
  EXPECT_EQ(c.lookup("b", b), h2);
  EXPECT_FALSE(c.lookup("c", b));  // another path, same stat
  auto changed = a;
  changed.st_size += 1;
  EXPECT_FALSE(c.lookup("a", changed));
  changed = a;
  changed.st_ctim.tv_nsec += 1;  // e.g. chmod, or an edit that kept size and mtime
  EXPECT_FALSE(c.lookup("a", changed));
  changed = a;
  changed.st_ino += 1;
  EXPECT_FALSE(c.lookup("a", changed));
}

TEST_F(DigestCacheTest, RecentlyChangedFilesAreNeverStored) {
  std::ofstream(src / "fresh") << "x";
  struct stat st;
  lstat((src / "fresh").c_str(), &st);
  {
    DigestCacheFile c(cache, src);
    c.store("fresh", st, h1);
    c.save();
  }
  DigestCacheFile c(cache, src);
  EXPECT_FALSE(c.lookup("fresh", st));
}

TEST_F(DigestCacheTest, SaveKeepsOnlyWhatThisWalkSawAndSkipsUnchangedWrites) {
  auto [a, b] = saved_two_files();
  auto before = fs::last_write_time(cache_file());
  {
    DigestCacheFile c(cache, src);  // everything seen, nothing new: no write
    ASSERT_TRUE(c.lookup("a", a));
    ASSERT_TRUE(c.lookup("b", b));
    c.save();
  }
  EXPECT_EQ(fs::last_write_time(cache_file()), before);
  {
    DigestCacheFile c(cache, src);  // b is gone from the tree
    ASSERT_TRUE(c.lookup("a", a));
    c.save();
  }
  DigestCacheFile c(cache, src);
  EXPECT_EQ(c.known_files(), 1u);
  EXPECT_TRUE(c.lookup("a", a));
  EXPECT_FALSE(c.lookup("b", b));
}

TEST_F(DigestCacheTest, GarbledOrUnsortedFilesAreHandled) {
  auto [a, b] = saved_two_files();
  const fs::path f = cache_file();
  std::string text = read(f);
  auto header_end = text.find('\n') + 1;
  auto line_a_end = text.find('\n', header_end) + 1;
  // Lines swapped, plus junk: the good lines are still found, the junk ignored.
  std::string swapped = text.substr(0, header_end) + text.substr(line_a_end) + "junk\tline\n" +
                        text.substr(header_end, line_a_end - header_end) + "no tabs at all";
  std::ofstream(f, std::ios::trunc) << swapped;
  {
    DigestCacheFile c(cache, src);
    EXPECT_EQ(c.known_files(), 2u);
    EXPECT_EQ(c.lookup("a", a), h1);
    EXPECT_EQ(c.lookup("b", b), h2);
  }
  std::ofstream(f, std::ios::trunc) << "not a sprout cache\n" << text;
  DigestCacheFile bad(cache, src);
  EXPECT_EQ(bad.known_files(), 0u);
  EXPECT_FALSE(bad.lookup("a", a));
  std::ofstream(f, std::ios::trunc);  // empty
  DigestCacheFile empty(cache, src);
  EXPECT_EQ(empty.known_files(), 0u);
}

TEST_F(DigestCacheTest, OneFilePerSourceTree) {
  auto a = old_file("a", "1");
  {
    DigestCacheFile c(cache, src);
    c.store("a", a, h1);
    c.save();
  }
  DigestCacheFile other(cache, base / "elsewhere");
  EXPECT_FALSE(other.lookup("a", a));
}

}  // namespace
