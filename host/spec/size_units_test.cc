#include "spec/size_units.h"

#include <gtest/gtest.h>

using namespace sprout;

TEST(SizeUnits, AllLibvirtMemoryUnits) {
  EXPECT_EQ(memory_unit_bytes("b"), 1u);
  EXPECT_EQ(memory_unit_bytes("bytes"), 1u);
  EXPECT_EQ(memory_unit_bytes("KB"), 1000u);
  EXPECT_EQ(memory_unit_bytes("k"), 1024u);
  EXPECT_EQ(memory_unit_bytes("KiB"), 1024u);
  EXPECT_EQ(memory_unit_bytes("MB"), 1000000u);
  EXPECT_EQ(memory_unit_bytes("M"), 1u << 20);
  EXPECT_EQ(memory_unit_bytes("MiB"), 1u << 20);
  EXPECT_EQ(memory_unit_bytes("GB"), 1000000000u);
  EXPECT_EQ(memory_unit_bytes("G"), 1u << 30);
  EXPECT_EQ(memory_unit_bytes("GiB"), 1u << 30);
  EXPECT_EQ(memory_unit_bytes("TB"), 1000000000000u);
  EXPECT_EQ(memory_unit_bytes("T"), 1ull << 40);
  EXPECT_EQ(memory_unit_bytes("TiB"), 1ull << 40);
  EXPECT_EQ(memory_unit_bytes("gib"), std::nullopt);
  EXPECT_EQ(memory_unit_bytes(""), std::nullopt);
}

TEST(SizeUnits, DiskUnitsAndOverflow) {
  EXPECT_EQ(disk_unit_bytes("G"), 1u << 30);
  EXPECT_EQ(disk_unit_bytes("GiB"), std::nullopt);
  EXPECT_EQ(checked_multiply(3, 1024), 3072u);
  EXPECT_EQ(checked_multiply(UINT64_MAX / 2, 3), std::nullopt);
}
