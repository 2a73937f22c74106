#include "spec/state_dir.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include "base/mode_testing.h"
#include "base/temp_dir.h"

using sprout::StateDir;
using sprout::testing::mode_of;
using sprout::testing::ScopedUmask;

// sprout's units run with UMask=0077: a libvirt VM's state directory, and the parents
// sprout makes for it, must still let libvirt's unprivileged qemu pass.
TEST(StateDir, ALibvirtVmsDirectoryAndTheParentsItMakesAre0711UnderAStrictUmask) {
  sprout::TempDir t("state-dir");
  ScopedUmask strict(077);
  StateDir{t.path() / "vms" / "web"}.make_private(true);
  EXPECT_EQ(mode_of(t.path() / "vms"), 0711u);
  EXPECT_EQ(mode_of(t.path() / "vms" / "web"), 0711u);
}

TEST(StateDir, AQemuVmsDirectoryIs0700AndAWiderOneIsTightened) {
  sprout::TempDir t("state-dir");
  ScopedUmask loose(0);
  StateDir{t.path() / "web"}.make_private(false);
  EXPECT_EQ(mode_of(t.path() / "web"), 0700u);
  ::chmod((t.path() / "web").c_str(), 0755);
  StateDir{t.path() / "web"}.make_private(true);
  EXPECT_EQ(mode_of(t.path() / "web"), 0711u);
  StateDir{t.path() / "web"}.make_private(false);
  EXPECT_EQ(mode_of(t.path() / "web"), 0700u);
}
