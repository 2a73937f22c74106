#include "runtime/console_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

namespace fs = std::filesystem;

// A writer with O_APPEND (as qemu's file chardev with append=on): after a rotation
// its next write lands at the start of the truncated file, not at its old offset.
TEST(ConsoleLogCap, RotatesUnderAnAppendingWriter) {
  fs::path dir = fs::temp_directory_path() / ("console-log-test-" + std::to_string(getpid()));
  fs::create_directories(dir);
  fs::path log = dir / "console.log";
  int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  ASSERT_GE(fd, 0);
  std::string chunk(64 << 10, 'x');
  for (int i = 0; i < 40; ++i) ASSERT_EQ(::write(fd, chunk.data(), chunk.size()), static_cast<ssize_t>(chunk.size()));
  sprout::ConsoleLogCap cap(log, 1 << 20, std::chrono::milliseconds(0));
  cap.tick();
  EXPECT_EQ(cap.rotations(), 1u);
  EXPECT_EQ(fs::file_size(log), 0u);
  EXPECT_EQ(fs::file_size(dir / "console.log.1"), 40u * chunk.size());
  ASSERT_EQ(::write(fd, "after\n", 6), 6);
  EXPECT_EQ(fs::file_size(log), 6u);
  cap.tick();  // under the cap: nothing happens
  EXPECT_EQ(cap.rotations(), 1u);
  ::close(fd);
  fs::remove_all(dir);
}
