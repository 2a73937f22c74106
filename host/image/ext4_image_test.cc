#include "image/ext4_image.h"

#include <gtest/gtest.h>

using namespace sprout;

TEST(Ext4Image, SizeHasMinimumAndMargin) {
  TreeSize empty;
  EXPECT_EQ(image_size_for(empty), 8u << 20);
  TreeSize big;
  big.files = 1;
  big.data_bytes = 1ull << 30;
  auto s = image_size_for(big);
  EXPECT_GT(s, big.data_bytes + (big.data_bytes / 20));
  EXPECT_EQ(s % (1 << 20), 0u);
}

TEST(Ext4Image, UuidFromDigestIsWellFormedAndStable) {
  std::string hex(64, 'f');
  auto u = uuid_from_hex(hex);
  EXPECT_EQ(u.size(), 36u);
  EXPECT_EQ(u[14], '4');
  EXPECT_EQ(u, uuid_from_hex(hex));
  EXPECT_NE(u, uuid_from_hex(std::string(64, '0')));
}
