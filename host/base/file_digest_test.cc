#include "base/file_digest.h"

#include <sys/stat.h>

#include <fstream>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "base/sha256.h"
#include "base/temp_dir.h"

namespace sprout {

namespace {
void write(const std::filesystem::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }
std::filesystem::path memo_of(const std::filesystem::path& dir, const std::filesystem::path& f) {
  return dir / sha256_hex(f.string()).substr(0, 32);
}
// The identity file_digest.cc writes: device, inode, size, mtime, ctime.
std::string identity(const std::filesystem::path& f) {
  struct stat st;
  ::stat(f.c_str(), &st);
  return fmt::format("{}:{}:{}:{}.{:09}:{}.{:09}", st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec,
                     st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}
}  // namespace

TEST(FileDigest, AJustWrittenFileIsHashedNotRemembered) {
  TempDir dir("file-digest");
  const auto f = dir.path() / "base.img", memo = dir.path() / "memo";
  write(f, "hello");
  EXPECT_EQ(file_sha256(f, memo), sha256_hex("hello"));
  EXPECT_FALSE(std::filesystem::exists(memo_of(memo, f)));
}

TEST(FileDigest, AMemoIsBelievedOnlyForTheSameIdentity) {
  TempDir dir("file-digest");
  const auto f = dir.path() / "base.img", memo = dir.path() / "memo";
  write(f, "hello");
  std::filesystem::create_directories(memo);
  const std::string fake(64, 'a');
  write(memo_of(memo, f), identity(f) + " " + fake + "\n");
  EXPECT_EQ(file_sha256(f, memo), fake);  // not read again: the memo answered
  write(f, "changed");                     // another size and mtime
  EXPECT_EQ(file_sha256(f, memo), sha256_hex("changed"));
}

TEST(FileDigest, MissingFileNamesIt) {
  TempDir dir("file-digest");
  try {
    file_sha256(dir.path() / "nope", dir.path() / "memo");
    FAIL();
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
  }
}

}  // namespace sprout
