// file_acl: the ACL encoding (pure), and on a real file what another uid can then do:
// read it, and neither write nor chmod it; and nothing after revoke.
#include "base/file_acl.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>

#include "base/temp_dir.h"

using namespace sprout;
namespace fs = std::filesystem;

namespace {

constexpr uid_t kOther = 1936719999;  // in sprout's dynamic range: nobody's

/// What `uid` (gid the same) gets from open(path, flags) and chmod(path): {open ok, chmod ok}.
std::pair<bool, bool> try_as(uid_t uid, const fs::path& path, int flags) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(uid) != 0 || ::setuid(uid) != 0) ::_exit(9);
    int fd = ::open(path.c_str(), flags);
    const bool chmod_ok = ::chmod(path.c_str(), 0666) == 0;
    ::_exit((fd >= 0 ? 1 : 0) | (chmod_ok ? 2 : 0));
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) != 9);
  return {(WEXITSTATUS(st) & 1) != 0, (WEXITSTATUS(st) & 2) != 0};
}

}  // namespace

TEST(FileAcl, EncodesAUserEntryWithItsMaskAndRemovesIt) {
  const std::string granted = acl_with_user("", 0400, kOther, true);
  // version 2; user::r--, user:kOther:r--, group::---, mask::r--, other::---
  ASSERT_EQ(granted.size(), 4u + 5 * 8);
  EXPECT_TRUE(acl_names_user(granted, kOther));
  EXPECT_FALSE(acl_names_user(granted, kOther + 1));
  EXPECT_FALSE(acl_names_user("", kOther));
  // A second user; then the first removed: the second stays, so does the mask.
  const std::string two = acl_with_user(granted, 0440, kOther + 1, true);
  EXPECT_EQ(two.size(), 4u + 6 * 8);
  const std::string one = acl_with_user(two, 0440, kOther, false);
  EXPECT_FALSE(acl_names_user(one, kOther));
  EXPECT_TRUE(acl_names_user(one, kOther + 1));
  // Granting twice changes nothing; the last entry removed leaves the three of the mode.
  EXPECT_EQ(acl_with_user(granted, 0440, kOther, true), granted);
  EXPECT_EQ(acl_with_user(granted, 0440, kOther, false).size(), 4u + 3 * 8);
  EXPECT_THROW(acl_with_user("nonsense", 0400, kOther, true), std::invalid_argument);
}

// An ACL that names others under a narrow mask keeps that mask: granting one uid read
// never widens what the others get (bob's rw- stays r-- effective).
TEST(FileAcl, GrantingNeverWidensTheMask) {
  const uid_t bob = kOther + 7;
  // user::r--, user:bob:rw-, group::---, mask::r--, other::--- (tag, perm, id; LE)
  auto entry = [](std::uint16_t tag, std::uint16_t perm, std::uint32_t id) {
    std::string e(8, '\0');
    e[0] = static_cast<char>(tag); e[2] = static_cast<char>(perm);
    for (int i = 0; i < 4; ++i) e[4 + i] = static_cast<char>((id >> (8 * i)) & 0xff);
    return e;
  };
  std::string narrow = std::string("\x02\0\0\0", 4) + entry(0x01, 4, 0xffffffff) + entry(0x02, 6, bob) +
                       entry(0x04, 0, 0xffffffff) + entry(0x10, 4, 0xffffffff) + entry(0x20, 0, 0xffffffff);
  const std::string granted = acl_with_user(narrow, 0440, kOther, true);
  ASSERT_EQ(granted.size(), 4u + 6 * 8);
  // The mask entry (tag 0x10) is the fifth, still r--.
  bool seen = false;
  for (std::size_t at = 4; at < granted.size(); at += 8)
    if (granted[at] == 0x10) {
      seen = true;
      EXPECT_EQ(granted[at + 2], 4) << "the mask was widened";
    }
  EXPECT_TRUE(seen);
  EXPECT_TRUE(acl_names_user(granted, kOther));
}

TEST(FileAcl, TheUserMayReadAndNeitherWriteNorChmod) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (another uid tries the file)";
  TempDir dir("file-acl");
  ::chmod(dir.path().c_str(), 0711);
  const fs::path f = dir.path() / "image";
  std::ofstream(f) << "bytes";
  ::chmod(f.c_str(), 0400);
  EXPECT_FALSE(try_as(kOther, f, O_RDONLY).first);

  int fd = ::open(f.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  grant_read(fd, f, kOther);
  grant_read(fd, f, kOther);  // idempotent
  EXPECT_TRUE(acl_names_user(read_access_acl(fd, f), kOther));
  struct stat st {};
  ::fstat(fd, &st);
  EXPECT_EQ(st.st_mode & 07777, 0440u);  // the group bits show the mask; the group itself gets nothing
  EXPECT_EQ(try_as(kOther, f, O_RDONLY), std::make_pair(true, false));
  EXPECT_EQ(try_as(kOther, f, O_WRONLY), std::make_pair(false, false));
  EXPECT_FALSE(try_as(kOther + 1, f, O_RDONLY).first);  // nobody else

  revoke(fd, f, kOther);
  EXPECT_FALSE(acl_names_user(read_access_acl(fd, f), kOther));
  EXPECT_FALSE(try_as(kOther, f, O_RDONLY).first);
  ::close(fd);
}
