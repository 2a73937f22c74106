#include "nar_restore.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <system_error>

#include <gtest/gtest.h>

#include "nar_checksum.h"
#include "nar_test_builder.h"
#include "subprocess.h"
#include "test_tree.h"

namespace sprout::agent {
namespace {

namespace fs = std::filesystem;
using testing::Nar;
using testing::TempTree;

int memfd_of(const std::string& bytes) {
  int fd = ::memfd_create("nar", MFD_CLOEXEC);
  EXPECT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  ::lseek(fd, 0, SEEK_SET);
  return fd;
}

struct Restore : ::testing::Test {
  TempTree t;
  std::vector<char> buffer;
  int dir = -1;
  void SetUp() override {
    fs::create_directories(t.path("/store"));
    dir = ::open(t.path("/store").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }
  void TearDown() override {
    ::close(dir);
    EXPECT_EQ(remove_tree(t.path("/store").string()), "");
  }
  NarRestored restore(const std::string& nar, const std::string& name = "out") {
    int fd = memfd_of(nar);
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } c{fd};
    return restore_nar(fd, dir, name, "test.nar", buffer);
  }
  struct stat lstat_of(const std::string& rel) {
    struct stat st {};
    EXPECT_EQ(::lstat(t.path("/store/" + rel).c_str(), &st), 0) << rel;
    return st;
  }
  std::string malformed(const std::string& nar) {
    EXPECT_EQ(remove_tree(t.path("/store/out").string()), "");
    try {
      restore(nar);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "(accepted)";
  }
};

// Crosses the 1 MiB read buffer several times, at an offset that is not a multiple of 8.
const std::string kBig = [] {
  std::string s(3 * (1 << 20) + 13, '\0');
  for (std::size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>(i * 7 + i / 4096);
  return s;
}();

Nar tree() {
  Nar n;
  n.dir();
  n.entry("a").file("hello").end_entry();
  n.entry("big").file(kBig).end_entry();
  n.entry("bin").dir().entry("run").file("#!/bin/sh\necho hi\n", true).end_entry().end_dir().end_entry();
  n.entry("empty").file("").end_entry();
  n.entry("empty-dir").dir().end_dir().end_entry();
  n.entry("link").symlink("a").end_entry();
  n.entry("z-abs").symlink("/nix/store/elsewhere").end_entry();
  n.end_dir();
  return n;
}

TEST_F(Restore, ATreeAsNixLeavesAStorePathHashedAsRead) {
  Nar n = tree();
  NarRestored r = restore(n.bytes());
  EXPECT_EQ(r.size, n.bytes().size());
  EXPECT_EQ(r.digest_hex, testing::sha256_hex(n.bytes()));
  EXPECT_EQ(r.files, 4u);
  EXPECT_EQ(r.directories, 3u);
  EXPECT_EQ(r.symlinks, 2u);
  EXPECT_EQ(t.read("/store/out/a"), "hello");
  EXPECT_EQ(t.read("/store/out/big"), kBig);
  EXPECT_EQ(t.read("/store/out/bin/run"), "#!/bin/sh\necho hi\n");
  EXPECT_EQ(t.read("/store/out/empty"), "");
  EXPECT_EQ(fs::read_symlink(t.path("/store/out/link")), "a");
  EXPECT_EQ(fs::read_symlink(t.path("/store/out/z-abs")), "/nix/store/elsewhere");
  for (const char* f : {"out/a", "out/big", "out/empty"}) EXPECT_EQ(lstat_of(f).st_mode & 07777, 0444u) << f;
  EXPECT_EQ(lstat_of("out/bin/run").st_mode & 07777, 0555u);
  for (const char* d : {"out", "out/bin", "out/empty-dir"}) {
    EXPECT_TRUE(S_ISDIR(lstat_of(d).st_mode));
    EXPECT_EQ(lstat_of(d).st_mode & 07777, 0555u) << d;
  }
  for (const char* p : {"out", "out/a", "out/big", "out/bin", "out/bin/run", "out/empty", "out/empty-dir", "out/link"})
    EXPECT_EQ(lstat_of(p).st_mtim.tv_sec, 1) << p;
}

TEST_F(Restore, OrHashedWithTheClosureDisksChecksum) {
  Nar n = tree();
  int fd = memfd_of(n.bytes());
  NarRestored r = restore_nar(fd, dir, "out", "test.nar", buffer, NarDigest::xxh3_128);
  ::close(fd);
  NarChecksum c;
  c.update(n.bytes().data(), n.bytes().size());
  EXPECT_EQ(r.digest_hex, c.hex());
  EXPECT_EQ(r.size, n.bytes().size());
  EXPECT_EQ(t.read("/store/out/big"), kBig);
}

TEST_F(Restore, ASingleFileOrSymlinkIsAStorePathToo) {
  restore(Nar().file("just a file", true).bytes(), "f");
  EXPECT_EQ(t.read("/store/f"), "just a file");
  EXPECT_EQ(lstat_of("f").st_mode & 07777, 0555u);
  restore(Nar().symlink("f").bytes(), "l");
  EXPECT_EQ(fs::read_symlink(t.path("/store/l")), "f");
}

// The same bytes as Nix's own serialisation, both ways, where Nix is installed.
TEST_F(Restore, RoundTripsWithNixStoreDump) {
  std::string nix_store = find_program("nix-store");
  if (nix_store.empty()) GTEST_SKIP() << "nix-store is not installed";
  restore(tree().bytes());
  ProcessOptions o;
  o.argv = {nix_store, "--dump", t.path("/store/out").string()};
  o.max_capture_bytes = 64 << 20;
  o.timeout = std::chrono::minutes(2);
  ProcessResult r = run_process(o);
  ASSERT_TRUE(r.ok()) << r.describe() << r.output.substr(0, 500);
  EXPECT_TRUE(r.output == tree().bytes()) << "nix-store --dump of the restored tree differs from the NAR";
}

TEST_F(Restore, MalformedArchivesAreRefusedNamingWhy) {
  EXPECT_NE(malformed(Nar().bytes().replace(8, 3, "abc")).find("expected \"nix-archive-1\""), std::string::npos);
  Nar unsorted;
  unsorted.dir().entry("b").file("").end_entry().entry("a").file("").end_entry().end_dir();
  EXPECT_NE(malformed(unsorted.bytes()).find("not in order (\"a\" after \"b\")"), std::string::npos);
  Nar twice;
  twice.dir().entry("a").file("").end_entry().entry("a").file("").end_entry().end_dir();
  EXPECT_NE(malformed(twice.bytes()).find("not in order"), std::string::npos);
  for (const char* bad : {"..", ".", "a/b", ""}) {
    Nar n;
    n.dir().entry(bad).file("").end_entry().end_dir();
    EXPECT_NE(malformed(n.bytes()).find("is named"), std::string::npos) << bad;
  }
  Nar trailing = Nar().file("x");
  trailing.bytes() += std::string(8, '\0');
  EXPECT_NE(malformed(trailing.bytes()).find("bytes after the end"), std::string::npos);
  std::string cut = Nar().file(kBig).bytes();
  cut.resize(cut.size() - 100);
  EXPECT_NE(malformed(cut).find("ends inside a file's contents"), std::string::npos);
  std::string pad = Nar().file("abc").bytes();
  pad[pad.size() - 17] = 'x';  // the contents' last padding byte, before ")" (16 bytes)
  EXPECT_NE(malformed(pad).find("padding is not zero"), std::string::npos);
  EXPECT_NE(malformed(Nar().str("(").str("type").str("fifo").bytes()).find("unknown node type \"fifo\""),
            std::string::npos);
  EXPECT_NE(malformed(Nar().str("(").str("type").str("regular").str("executable").str("x").bytes())
                .find("the executable flag is not empty"),
            std::string::npos);
  Nar nul;
  nul.dir().entry(std::string("a\0b", 3)).file("").end_entry().end_dir();
  EXPECT_NE(malformed(nul.bytes()).find("is named"), std::string::npos);
  Nar deep;
  for (int i = 0; i < 300; ++i) deep.dir().entry("d");
  EXPECT_NE(malformed(deep.bytes()).find("nested deeper than 256"), std::string::npos);
  std::string huge = Nar().str("(").bytes();
  huge.append("\xff\xff\xff\xff\xff\xff\xff\x7f", 8);
  EXPECT_NE(malformed(huge).find("a tag of"), std::string::npos);
}

TEST_F(Restore, NeverOverwritesOrFollows) {
  fs::create_directories(t.path("/outside"));
  ASSERT_EQ(::symlinkat(t.path("/outside").c_str(), dir, "out"), 0);
  EXPECT_THROW(restore(tree().bytes()), std::system_error);
  EXPECT_TRUE(fs::is_empty(t.path("/outside")));
}

TEST_F(Restore, RemoveTreeRemovesReadOnlyTrees) {
  restore(tree().bytes());
  EXPECT_EQ(remove_tree(t.path("/store/out").string()), "");
  EXPECT_FALSE(fs::exists(fs::symlink_status(t.path("/store/out"))));
  EXPECT_EQ(remove_tree(t.path("/store/out").string()), "") << "nothing there is no error";
}

}  // namespace
}  // namespace sprout::agent
