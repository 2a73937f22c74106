// The in-process ext4 writer, checked with e2fsprogs' own tools: `e2fsck -fn` finds
// nothing to fix, `debugfs` reads back every name, mode, link and byte that was
// listed, the hashes are of those bytes, the same tree gives the same image, and a
// tree that changes after it was listed is refused.
#include "image/ext4_writer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "base/temp_dir.h"

#include "error.h"
#include "base/sha256.h"
#include "image/tree_digest.h"

using namespace sprout;
namespace fs = std::filesystem;

namespace {

std::string run(const std::string& cmd, int* status = nullptr) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = ::pclose(p);
  if (status) *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return out;
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7 + (i >> 12)) & 0xff);
  return s;
}

class Ext4WriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    src = base / "src";
    fs::create_directories(src / "a" / "b");
    fs::create_directories(src / "private");
    files = {{"empty", ""},
             {"one", "x"},
             {"block", pattern(4096, 1)},
             {"block-and-one", pattern(4097, 2)},
             // more than one 256 KiB read, not a whole number of blocks
             {"a/big", pattern(700 * 1024 + 5, 3)},
             {"a/b/deep.nix", "{ deep = true; }\n"},
             {"private/key", "secret\n"}};
    for (const auto& [rel, text] : files) std::ofstream(src / rel, std::ios::binary) << text;
    fs::permissions(src / "private", fs::perms::owner_all, fs::perm_options::replace);
    fs::permissions(src / "private" / "key", fs::perms::owner_read, fs::perm_options::replace);
    ::chmod((src / "one").c_str(), 04755);
    fs::create_symlink("a/b/deep.nix", src / "short-link");
    fs::create_symlink(std::string(100, 'l'), src / "long-link");  // not a fast symlink
    fs::create_hard_link(src / "block", src / "a" / "block-again");
  }

  /// Builds an image of the tree; returns its path and fills `hashes`.
  fs::path build(const std::string& name, std::map<std::string, std::string>* hashes = nullptr) {
    TreeListing listing = list_tree(src);
    TreeSize size;
    for (const auto& e : listing.entries) account_entry(size, e);
    fs::path out = base / name;
    Ext4Writer w(out, "sprout-test", std::string(64, 'a'), size);
    auto h = w.add_listing(listing);
    w.add_file("manifest.json", "{}\n", 0444);
    w.ensure_directories({"hosts/self"});
    w.finish();
    if (hashes) *hashes = h;
    return out;
  }

  TempDir tmp{"ext4-writer"};
  fs::path base = tmp.path(), src;
  std::vector<std::pair<std::string, std::string>> files;
};

TEST_F(Ext4WriterTest, E2fsckFindsNothingToFix) {
  fs::path img = build("img");
  int rc = 0;
  std::string out = run("e2fsck -fn " + img.string(), &rc);
  EXPECT_EQ(rc, 0) << out;
  std::string sb = run("dumpe2fs -h " + img.string());
  EXPECT_NE(sb.find("Filesystem volume name:   sprout-test"), std::string::npos) << sb;
  EXPECT_NE(sb.find("metadata_csum"), std::string::npos) << sb;
  EXPECT_EQ(sb.find("has_journal"), std::string::npos) << sb;
  // Fixed whatever the host: the hash's signedness, and no I/O statistics (they would
  // follow how the writes happened to be split).
  EXPECT_NE(sb.find("signed_directory_hash"), std::string::npos) << sb;
  EXPECT_EQ(sb.find("Lifetime writes"), std::string::npos) << sb;
}

TEST_F(Ext4WriterTest, ATreesOwnLostAndFoundIsMergedIntoTheFilesystems) {
  fs::create_directories(src / "lost+found");
  std::ofstream(src / "lost+found" / "kept") << "kept\n";
  fs::path img = build("img");
  int rc = 0;
  std::string out = run("e2fsck -fn " + img.string(), &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(run("debugfs -R 'cat /lost+found/kept' " + img.string()).find("kept\n") != std::string::npos, true);
  fs::remove_all(src / "lost+found");
  std::ofstream(src / "lost+found") << "a file\n";
  EXPECT_THROW(build("img2"), InputError);
}

TEST_F(Ext4WriterTest, DebugfsReadsBackEveryByteNameModeAndLink) {
  std::map<std::string, std::string> hashes;
  fs::path img = build("img", &hashes);
  fs::path back = base / "back";
  fs::create_directories(back);
  run("debugfs -R 'rdump / " + back.string() + "' " + img.string());
  for (const auto& [rel, text] : files) {
    EXPECT_EQ(read_all(back / rel), text) << rel;
    EXPECT_EQ(hashes.at(rel), sha256_hex(text)) << rel;
  }
  EXPECT_EQ(read_all(back / "manifest.json"), "{}\n");
  EXPECT_TRUE(fs::is_directory(back / "hosts" / "self"));
  EXPECT_TRUE(fs::is_directory(back / "lost+found"));
  EXPECT_EQ(fs::read_symlink(back / "short-link"), "a/b/deep.nix");
  EXPECT_EQ(fs::read_symlink(back / "long-link"), std::string(100, 'l'));
  // Modes, owners, times and links, as the guest's kernel will see them.
  std::string one = run("debugfs -R 'stat /one' " + img.string());
  EXPECT_NE(one.find("Mode:  04755"), std::string::npos) << one;
  EXPECT_NE(one.find("User:     0   Group:     0"), std::string::npos) << one;
  EXPECT_NE(one.find("mtime: 0x00000001"), std::string::npos) << one;
  EXPECT_NE(run("debugfs -R 'stat /private' " + img.string()).find("Mode:  0700"), std::string::npos);
  EXPECT_NE(run("debugfs -R 'stat /private/key' " + img.string()).find("Mode:  0400"), std::string::npos);
  std::string block = run("debugfs -R 'stat /block' " + img.string());
  EXPECT_NE(block.find("Links: 2"), std::string::npos) << block;
  std::string again = run("debugfs -R 'stat /a/block-again' " + img.string());
  EXPECT_EQ(block.substr(0, block.find("Type:")), again.substr(0, again.find("Type:")));  // one inode
  EXPECT_EQ(hashes.at("a/block-again"), hashes.at("block"));
}

TEST_F(Ext4WriterTest, TheSameTreeGivesTheSameBytes) {
  std::string first = read_all(build("one.img"));
  std::string second = read_all(build("two.img"));
  EXPECT_EQ(first.size(), second.size());
  EXPECT_TRUE(first == second);
}

TEST_F(Ext4WriterTest, ATreeChangedAfterItWasListedIsRefused) {
  TreeListing listing = list_tree(src);
  TreeSize size;
  for (const auto& e : listing.entries) account_entry(size, e);
  std::ofstream(src / "a" / "b" / "deep.nix", std::ios::app) << "# more\n";
  Ext4Writer w(base / "img", "sprout-test", std::string(64, 'a'), size);
  try {
    w.add_listing(listing);
    FAIL() << "a changed file was written";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("deep.nix: changed since it was listed"), std::string::npos) << e.what();
  }
}

TEST_F(Ext4WriterTest, AReservedNameIsRefused) {
  TreeListing listing = list_tree(src);
  TreeSize size;
  for (const auto& e : listing.entries) account_entry(size, e);
  Ext4Writer w(base / "img", "sprout-test", std::string(64, 'a'), size);
  w.add_listing(listing);
  EXPECT_THROW(w.add_file("one", "x", 0444), InputError);
}

}  // namespace
