#include "libvirt/volume_names.h"

#include <gtest/gtest.h>

namespace sprout {

const std::string kHex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(VolumeNames, RoundTrip) {
  const auto b = base_volume_name(kHex64, "qcow2");
  EXPECT_EQ(b, "base-0123456789abcdef0123456789abcdef.qcow2");
  EXPECT_EQ(parse_volume_name(b).kind, VolumeName::base);
  const auto img = image_volume_name("config-0123456789abcdef0123456789abcdef.ext4");
  ASSERT_TRUE(img);
  EXPECT_EQ(parse_volume_name(*img).kind, VolumeName::image);
  const auto s = secrets_volume_name("web.1", kHex64);
  EXPECT_EQ(s, "web.1@secrets-0123456789abcdef0123456789abcdef.img");
  EXPECT_EQ(parse_volume_name(s).kind, VolumeName::secrets);
  EXPECT_EQ(parse_volume_name(s).vm, "web.1");
  const auto o = overlay_volume_name("web.1");
  EXPECT_EQ(parse_volume_name(o).kind, VolumeName::overlay);
  EXPECT_EQ(parse_volume_name(o).vm, "web.1");
  EXPECT_FALSE(parse_volume_name(o).uploaded());
  const auto m = marker_volume_name(s);
  EXPECT_EQ(parse_volume_name(m).kind, VolumeName::marker);
  EXPECT_EQ(parse_volume_name(m).target, s);
}

TEST(VolumeNames, OthersAreForeign) {
  for (const char* n : {"disk.qcow2", "base-xyz.qcow2", "config-0123.ext4", "@root.qcow2", "-a@root.qcow2",
                        "web@root.qcow2@complete", "disk.qcow2@complete", "a@b@secrets-0123456789abcdef0123456789abcdef.img",
                        "build-config.ext4"})
    EXPECT_EQ(parse_volume_name(n).kind, VolumeName::foreign) << n;
  EXPECT_FALSE(image_volume_name("config-0123456789abcdef0123456789abcdef.ext4.tmp"));
}

}  // namespace sprout
