#include "disk_role.h"

#include <set>
#include <string>

#include <gtest/gtest.h>

using namespace sprout;

TEST(DiskRole, SerialsFitQemuAndAreUnique) {
  std::set<std::string_view> serials, labels;
  for (const auto& r : disk_roles()) {
    EXPECT_LE(r.serial.size(), kMaxVirtioSerialBytes);
    EXPECT_LE(r.label.size(), kMaxExt4LabelBytes);
    serials.insert(r.serial);
    labels.insert(r.label);
  }
  EXPECT_EQ(serials.size(), disk_roles().size());
  EXPECT_EQ(labels.size(), disk_roles().size());
}

TEST(DiskRole, MountPointsAndRequirements) {
  EXPECT_EQ(role_info(DiskRole::config).mount_point, "/etc/nixos");
  EXPECT_EQ(role_info(DiskRole::self).mount_point, "/etc/nixos/hosts/self");
  EXPECT_EQ(role_info(DiskRole::ssh).mount_point, "/root/.ssh");
  EXPECT_TRUE(role_info(DiskRole::config).required);
  EXPECT_TRUE(role_info(DiskRole::self).required);
  EXPECT_FALSE(role_info(DiskRole::ssh).required);
  EXPECT_EQ(role_info(DiskRole::closure).serial, "sprout-closure");
  EXPECT_FALSE(role_info(DiskRole::closure).required);  // only host-built VMs have one
  // self is mounted inside config, so config must come first.
  EXPECT_EQ(disk_roles()[0].role, DiskRole::config);
}

TEST(DiskRole, LookupByName) {
  EXPECT_EQ(disk_role_from_name("self"), DiskRole::self);
  EXPECT_EQ(disk_role_from_name("root"), std::nullopt);
}
