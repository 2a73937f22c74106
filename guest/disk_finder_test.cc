#include "disk_finder.h"

#include <gtest/gtest.h>

#include "root_path.h"
#include "test_tree.h"

using namespace sprout::agent;
using sprout::DiskRole;
using sprout::agent::testing::TempTree;

namespace {
void add_disk(const TempTree& t, const std::string& name, const std::string& serial, bool ro,
              const std::string& label = "") {
  t.write("/sys/block/" + name + "/serial", serial.empty() ? "" : serial + "\n");
  t.write("/sys/block/" + name + "/ro", ro ? "1\n" : "0\n");
  t.write("/sys/block/" + name + "/dev", "254:0\n");
  std::string img(2048, '\0');
  if (!label.empty()) {
    img[1024 + 56] = '\x53';
    img[1024 + 57] = '\xEF';
    img.replace(1024 + 120, label.size(), label);
  }
  t.write("/dev/" + name, img);
}
}  // namespace

TEST(DiskFinder, BySerial) {
  TempTree t;
  add_disk(t, "vda", "sprout-test-state", false);
  add_disk(t, "vdb", "sprout-self", true);
  add_disk(t, "vdc", "sprout-config", true);
  auto f = scan_disks(t.root(), {DiskRole::config, DiskRole::self, DiskRole::ssh});
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f.at(DiskRole::config).device, "/dev/vdc");
  EXPECT_EQ(f.at(DiskRole::config).found_by, "serial");
  EXPECT_TRUE(f.at(DiskRole::config).read_only);
  EXPECT_EQ(f.at(DiskRole::self).device, "/dev/vdb");
}

TEST(DiskFinder, ByIdLinksFirstCheckedAgainstTheSerial) {
  TempTree t;
  add_disk(t, "vda", "sprout-config", true);
  add_disk(t, "vdb", "sprout-self", true);
  add_disk(t, "vdc", "other", true);
  t.symlink("../../vdb", "/dev/disk/by-id/virtio-sprout-self");
  t.symlink("../../vdc", "/dev/disk/by-id/virtio-sprout-config");  // stale: vdc has another serial
  auto f = scan_disks(t.root(), {DiskRole::config, DiskRole::self});
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f.at(DiskRole::self).device, "/dev/vdb");
  EXPECT_EQ(f.at(DiskRole::self).found_by, "by-id");
  EXPECT_TRUE(f.at(DiskRole::self).read_only);
  EXPECT_EQ(f.at(DiskRole::config).device, "/dev/vda");  // the stale link was not trusted
  EXPECT_EQ(f.at(DiskRole::config).found_by, "serial");
}

TEST(DiskFinder, OptionalRolesAreNotWaitedFor) {
  TempTree t;
  add_disk(t, "vdb", "sprout-self", true);
  add_disk(t, "vdc", "sprout-config", true);
  auto t0 = std::chrono::steady_clock::now();
  auto f = find_disks(t.root(), {DiskRole::config, DiskRole::self}, std::chrono::milliseconds(2000),
                      std::chrono::milliseconds(20), {DiskRole::ssh});
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(f.size(), 2u);
  EXPECT_LT(ms, 1000);
  add_disk(t, "vdd", "sprout-ssh", true);
  f = find_disks(t.root(), {DiskRole::config, DiskRole::self}, std::chrono::milliseconds(0),
                 std::chrono::milliseconds(20), {DiskRole::ssh});
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f.at(DiskRole::ssh).device, "/dev/vdd");
}

TEST(DiskFinder, LabelFallbackFromSuperblockAndByLabelLink) {
  TempTree t;
  add_disk(t, "vda", "", true, "sprout-config");
  add_disk(t, "vdb", "", false, "other");
  add_disk(t, "vdc", "", true);
  t.symlink("../../vdc", "/dev/disk/by-label/sprout-self");
  auto f = scan_disks(t.root(), {DiskRole::config, DiskRole::self});
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f.at(DiskRole::config).device, "/dev/vda");
  EXPECT_EQ(f.at(DiskRole::config).found_by, "label");
  EXPECT_EQ(f.at(DiskRole::self).device, "/dev/vdc");
}

TEST(DiskFinder, WaitIsBounded) {
  TempTree t;
  auto t0 = std::chrono::steady_clock::now();
  auto f = find_disks(t.root(), {DiskRole::self}, std::chrono::milliseconds(200));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(f.empty());
  EXPECT_GE(ms, 180);
  EXPECT_LT(ms, 2000);
}

TEST(DiskFinder, ReadsExt4LabelOfRealImage) {
  TempTree t;
  std::string img = t.path("/x.img");
  if (std::system(("mkfs.ext4 -q -F -L sprout-self " + img + " 1M >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << "mkfs.ext4 not available";
  EXPECT_EQ(read_ext4_label(img).value_or("?"), "sprout-self");
}
