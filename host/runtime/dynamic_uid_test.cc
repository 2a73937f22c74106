#include "runtime/dynamic_uid.h"

#include <signal.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "base/temp_dir.h"

using namespace sprout;
namespace fs = std::filesystem;

namespace {

/// A child process that runs as `uid` (gid the same) until killed; waits until /proc
/// shows it so.
pid_t start_process_as(uid_t uid) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgid(uid) != 0 || ::setuid(uid) != 0) ::_exit(3);
    ::pause();
    ::_exit(0);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (pid > 0 && processes_running_as(uid).empty() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return pid;
}

}  // namespace

TEST(DynamicUid, EachClaimHasAUidOfItsOwnUntilReleased) {
  TempDir dir("dynamic-uid");
  const fs::path reg = dir.path() / "uids";
  uid_t first = 0;
  {
    DynamicUid a = DynamicUid::claim(reg, "uid-test-web", reg / "none");
    DynamicUid b = DynamicUid::claim(reg, "uid-test-web", reg / "none");  // the same name twice: still two uids
    DynamicUid c = DynamicUid::claim(reg, "uid-test-db", reg / "none");
    first = a.uid();
    EXPECT_EQ(a.uid(), DynamicUid::first_choice("uid-test-web"));
    EXPECT_NE(a.uid(), b.uid());
    EXPECT_NE(a.uid(), c.uid());
    EXPECT_NE(b.uid(), c.uid());
    for (const DynamicUid* u : {&a, &b, &c}) {
      EXPECT_GE(u->uid(), kDynamicUidFirst);
      EXPECT_LT(u->uid() - kDynamicUidFirst, kDynamicUidCount);
      EXPECT_TRUE(fs::exists(reg / std::to_string(u->uid())));
    }
  }
  EXPECT_FALSE(fs::exists(reg / std::to_string(first)));  // released
  DynamicUid again = DynamicUid::claim(reg, "uid-test-web", reg / "none");
  EXPECT_EQ(again.uid(), first);  // the same VM gets the same uid run after run
}

TEST(DynamicUid, AStaleClaimIsTakenBackAndWhatRunsUnderItIsKilled) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a process as another uid";
  TempDir dir("dynamic-uid");
  const fs::path reg = dir.path() / "uids";
  const uid_t uid = DynamicUid::first_choice("uid-test-orphaned");
  fs::create_directories(reg);
  // A claim whose sprout is gone (pid 2^22 - 1 does not run; no start time matches).
  std::ofstream(reg / std::to_string(uid)) << R"({"supervisor": 4194303, "supervisorStart": 1, "vm": "uid-test-orphaned"})";
  // ... and the qemu it left behind, still running as the uid.
  pid_t orphan = start_process_as(uid);
  ASSERT_GT(orphan, 0);
  ASSERT_FALSE(processes_running_as(uid).empty());

  DynamicUid taken = DynamicUid::claim(reg, "uid-test-orphaned", reg / "none");
  EXPECT_EQ(taken.uid(), uid);
  int status = 0;
  ASSERT_EQ(::waitpid(orphan, &status, 0), orphan);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

TEST(DynamicUid, AUidSomeProcessRunsAsIsSkipped) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a process as another uid";
  TempDir dir("dynamic-uid");
  const uid_t uid = DynamicUid::first_choice("uid-test-busy");
  pid_t other = start_process_as(uid);
  ASSERT_GT(other, 0);
  ASSERT_FALSE(processes_running_as(uid).empty());
  DynamicUid u = DynamicUid::claim(dir.path() / "uids", "uid-test-busy", dir.path() / "none");
  EXPECT_NE(u.uid(), uid);
  ::kill(other, SIGKILL);
  ::waitpid(other, nullptr, 0);
}

TEST(DynamicUid, WhatTheUidLeftInIpcAndDevShmIsRemovedOnRelease) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to give objects to another uid";
  TempDir dir("dynamic-uid");
  int shm_id = -1;
  std::filesystem::path shm_file;
  {
    DynamicUid u = DynamicUid::claim(dir.path() / "uids", "uid-test-ipc", dir.path() / "none");
    // What an escaped qemu could leave: a System V segment and a POSIX shm file.
    shm_id = ::shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
    ASSERT_GE(shm_id, 0);
    struct shmid_ds ds {};
    ASSERT_EQ(::shmctl(shm_id, IPC_STAT, &ds), 0);
    ds.shm_perm.uid = u.uid();
    ds.shm_perm.gid = u.uid();
    ASSERT_EQ(::shmctl(shm_id, IPC_SET, &ds), 0);
    shm_file = "/dev/shm/sprout-uid-test-" + std::to_string(::getpid());
    std::ofstream(shm_file) << "left";
    ASSERT_EQ(::chown(shm_file.c_str(), u.uid(), u.uid()), 0);
  }
  struct shmid_ds after {};
  EXPECT_NE(::shmctl(shm_id, IPC_STAT, &after), 0) << "the segment is still there";
  EXPECT_FALSE(std::filesystem::exists(shm_file));
  if (::shmctl(shm_id, IPC_STAT, &after) == 0) ::shmctl(shm_id, IPC_RMID, nullptr);
  std::filesystem::remove(shm_file);
}
