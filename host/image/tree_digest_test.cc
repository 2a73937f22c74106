#include "image/tree_digest.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "error.h"
#include "image/listed_tree.h"

using namespace sprout;
namespace fs = std::filesystem;

namespace {

// The digest of the tree at `root`, as export takes it: listed, then read through the
// checked reader (listed_tree.h).
std::string tree_digest(const fs::path& root, const TreeFilter& filter = {}) {
  return ListedTreeReader(list_tree(root, filter)).content_digest();
}

}  // namespace

class TreeDigestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root = fs::temp_directory_path() / ("sprout-digest-" + std::to_string(getpid()));
    fs::remove_all(root);
    fs::create_directories(root / "a" / "b");
    std::ofstream(root / "a" / "f") << "hello";
    std::ofstream(root / "top") << "x";
    fs::create_symlink("../f", root / "a" / "b" / "link");
  }
  void TearDown() override { fs::remove_all(root); }
  fs::path root;
};

TEST_F(TreeDigestTest, SameTreeSameDigestTimestampsIgnored) {
  auto d1 = tree_digest(root);
  fs::last_write_time(root / "top", fs::file_time_type::clock::now() - std::chrono::hours(5));
  EXPECT_EQ(tree_digest(root), d1);
  EXPECT_EQ(d1.size(), 64u);
}

TEST_F(TreeDigestTest, EveryExportedPropertyChangesIt) {
  auto base = tree_digest(root);
  std::ofstream(root / "a" / "f") << "hellO";  // same size, other content
  auto content = tree_digest(root);
  EXPECT_NE(content, base);
  fs::permissions(root / "a" / "f", fs::perms::owner_exec, fs::perm_options::add);
  auto mode = tree_digest(root);
  EXPECT_NE(mode, content);
  fs::remove(root / "a" / "b" / "link");
  fs::create_symlink("../g", root / "a" / "b" / "link");
  auto link = tree_digest(root);
  EXPECT_NE(link, mode);
  fs::create_directory(root / "empty");
  auto dir = tree_digest(root);
  EXPECT_NE(dir, link);
  fs::rename(root / "top", root / "top2");
  EXPECT_NE(tree_digest(root), dir);
}

TEST_F(TreeDigestTest, OwnershipChangesIt) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  auto before = tree_digest(root);
  ASSERT_EQ(lchown((root / "top").c_str(), 1234, 1234), 0);
  EXPECT_NE(tree_digest(root), before);
}

TEST_F(TreeDigestTest, FilterExcludes) {
  auto all = tree_digest(root);
  auto filtered = tree_digest(root, [](const TreeEntry& e) { return e.rel != "top"; });
  EXPECT_NE(all, filtered);
  fs::remove(root / "top");
  EXPECT_EQ(tree_digest(root), filtered);
}

TEST_F(TreeDigestTest, SymlinksAreNotFollowed) {
  fs::create_symlink("/etc", root / "escape");
  EXPECT_NO_THROW(tree_digest(root));
}

TEST_F(TreeDigestTest, UnsupportedTypesAreInputErrors) {
  ASSERT_EQ(mkfifo((root / "pipe").c_str(), 0600), 0);
  try {
    tree_digest(root);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("pipe: is a fifo"), std::string::npos) << e.what();
  }
}

TEST_F(TreeDigestTest, MissingAndNonDirectorySources) {
  EXPECT_THROW(tree_digest(root / "missing"), InputError);
  EXPECT_THROW(tree_digest(root / "top"), InputError);
}

TEST(GenerationId, DependsOnEveryPart) {
  auto g = generation_id("a", "b", "", "{}");
  EXPECT_NE(g, generation_id("a", "b", "c", "{}"));
  EXPECT_NE(g, generation_id("a", "c", "", "{}"));
  EXPECT_NE(g, generation_id("a", "b", "", "{\"x\":1}"));
  EXPECT_EQ(g, generation_id("a", "b", "", "{}"));
  EXPECT_EQ(g, generation_id("a", "b", "", "{}", ""));  // guest-built: as before
  EXPECT_NE(g, generation_id("a", "b", "", "{}", "d"));
  EXPECT_NE(generation_id("a", "b", "", "{}", "d"), generation_id("a", "b", "", "{}", "e"));
}
