#include "root_path.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "test_tree.h"

using namespace sprout::agent;
using sprout::agent::testing::TempTree;

TEST(RootPath, UnderRoot) {
  EXPECT_EQ(under_root("/", "/sys/block"), "/sys/block");
  EXPECT_EQ(under_root("", "/sys/block"), "/sys/block");
  EXPECT_EQ(under_root("/tmp/t", "/sys/block"), "/tmp/t/sys/block");
  EXPECT_EQ(under_root("/tmp/t/", "//sys/block"), "/tmp/t/sys/block");
  EXPECT_EQ(under_root("/tmp/t", "/"), "/tmp/t/");
}

TEST(RootPath, ParentDir) {
  EXPECT_EQ(parent_dir("/var/lib/sprout/agent.log"), "/var/lib/sprout");
  EXPECT_EQ(parent_dir("/agent.log"), "/");
  EXPECT_EQ(parent_dir("/a//b"), "/a");
  EXPECT_EQ(parent_dir("agent.log"), ".");
  EXPECT_EQ(parent_dir("a/b"), "a");
}

TEST(RootPath, ResolveFollowsLinksInsideTheRoot) {
  TempTree t;
  t.write("/nix/store/abc-system/hostname", "x");
  t.symlink("/nix/var/nix/profiles/system", "/run/current-system");
  t.symlink("system-2-link", "/nix/var/nix/profiles/system");
  t.symlink("/nix/store/abc-system", "/nix/var/nix/profiles/system-2-link");
  EXPECT_EQ(resolve_in_root(t.root(), "/run/current-system"), "/nix/store/abc-system");
  EXPECT_EQ(resolve_in_root(t.root(), "/run/current-system/hostname"), "/nix/store/abc-system/hostname");
  EXPECT_EQ(resolve_in_root(t.root(), "/run/../run/./current-system"), "/nix/store/abc-system");
  EXPECT_EQ(resolve_in_root(t.root(), "/run/missing"), "");
  t.symlink("/loop-b", "/loop-a");
  t.symlink("/loop-a", "/loop-b");
  EXPECT_EQ(resolve_in_root(t.root(), "/loop-a"), "");
}

TEST(RootPath, ReadSmallFile) {
  TempTree t;
  t.write("/proc/sys/kernel/random/boot_id", "0b1c2d3e-aaaa-bbbb-cccc-000011112222\n");
  EXPECT_EQ(read_small_file(t.path("/proc/sys/kernel/random/boot_id").string(), 64),
            "0b1c2d3e-aaaa-bbbb-cccc-000011112222");
  EXPECT_EQ(read_small_file(t.path("/proc/sys/kernel/random/boot_id").string(), 8), "0b1c2d3e");
  EXPECT_EQ(read_small_file(t.path("/missing").string()), "");
}
