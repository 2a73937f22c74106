// The canonical walk: order, what each entry carries, errors, and that the listing
// (read on several threads when there is no filter) is exactly the sequential walk.
#include "image/tree.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "base/temp_dir.h"

#include "error.h"

using namespace sprout;
namespace fs = std::filesystem;

namespace {

class TreeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Names chosen so that per-directory order differs from whole-path order ("a-b" < "a/x").
    for (const char* d : {"a/x/deep/er", "a-b", "b", "empty", "z z/\xc3\xa9t\xc3\xa9"}) fs::create_directories(root / d);
    for (int i = 0; i < 300; ++i) std::ofstream(root / "b" / ("f" + std::to_string(i))) << i;
    std::ofstream(root / "a" / "x" / "deep" / "er" / "leaf") << "leaf";
    std::ofstream(root / "a-b" / "file") << "ab";
    fs::create_symlink("../b/f1", root / "a" / "link");
  }

  std::vector<std::string> walked(const fs::path& r) {
    std::vector<std::string> out;
    walk_tree(r, [&](const TreeEntry& e) { out.push_back(e.rel); });
    return out;
  }
  TempDir tmp{"tree"};
  fs::path root = tmp.path();
};

std::vector<std::string> rels(const TreeListing& l) {
  std::vector<std::string> out;
  for (const auto& e : l.entries) out.push_back(e.rel);
  return out;
}

TEST_F(TreeTest, SortedPerDirectoryParentsFirst) {
  auto w = walked(root);
  ASSERT_GE(w.size(), 310u);
  EXPECT_EQ(w[0], "");
  EXPECT_EQ(w[1], "a");
  EXPECT_EQ(w[2], "a/link");
  EXPECT_EQ(w[3], "a/x");
  EXPECT_EQ(w[4], "a/x/deep");
  EXPECT_EQ(w[7], "a-b");
  EXPECT_EQ(w.back(), "z z/\xc3\xa9t\xc3\xa9");
}

TEST_F(TreeTest, ListingIsTheWalkWithOrWithoutFilter) {
  auto w = walked(root);
  EXPECT_EQ(rels(list_tree(root)), w);                                         // parallel
  EXPECT_EQ(rels(list_tree(root, [](const TreeEntry&) { return true; })), w);  // sequential
  EXPECT_EQ(rels(list_tree(root, {}, 100000)), w);                            // any size hint
}

TEST_F(TreeTest, EntriesCarryPathsStatAndLinkTarget) {
  auto l = list_tree(root.string() + "/");
  for (const auto& e : l.entries) {
    EXPECT_EQ(e.abs.find("//"), std::string::npos) << e.abs;
    if (e.rel.empty()) continue;
    struct stat st;
    ASSERT_EQ(lstat(e.abs.c_str(), &st), 0) << e.abs;
    EXPECT_EQ(st.st_ino, e.st.st_ino) << e.rel;
    EXPECT_EQ(st.st_mode, e.st.st_mode) << e.rel;
    EXPECT_EQ(e.abs, (root / e.rel).string());
  }
  auto link = std::find_if(l.entries.begin(), l.entries.end(), [](const TreeEntry& e) { return e.rel == "a/link"; });
  ASSERT_NE(link, l.entries.end());
  EXPECT_TRUE(S_ISLNK(link->st.st_mode));
  EXPECT_EQ(link->link_target, "../b/f1");
}

TEST_F(TreeTest, FilterPrunesWholeSubtrees) {
  auto l = list_tree(root, [](const TreeEntry& e) { return e.rel != "a"; });
  for (const auto& e : l.entries) EXPECT_NE(e.rel.rfind("a/", 0), 0u) << e.rel;
  EXPECT_EQ(rels(l).size(), walked(root).size() - 6);
}

TEST_F(TreeTest, DeepFifoIsAnInputErrorInEveryMode) {
  ASSERT_EQ(mkfifo((root / "a" / "x" / "deep" / "pipe").c_str(), 0600), 0);
  for (bool filtered : {false, true}) {
    try {
      list_tree(root, filtered ? TreeFilter([](const TreeEntry&) { return true; }) : TreeFilter());
      ADD_FAILURE() << "no error";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("deep/pipe: is a fifo"), std::string::npos) << e.what();
    }
  }
}

TEST_F(TreeTest, RootMustBeADirectory) {
  EXPECT_THROW(list_tree(root / "missing"), InputError);
  EXPECT_THROW(list_tree(root / "a-b" / "file"), InputError);
  fs::create_directory_symlink(root / "a", root / "to-a");
  EXPECT_EQ(list_tree(root / "to-a").entries.size(), 6u);  // followed once, at the top
}

}  // namespace
