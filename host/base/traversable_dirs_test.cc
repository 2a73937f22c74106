#include "base/traversable_dirs.h"

#include <sys/stat.h>

#include <fstream>
#include <system_error>

#include <gtest/gtest.h>

#include "base/mode_testing.h"
#include "base/temp_dir.h"

using sprout::make_traversable_dirs;
namespace fs = std::filesystem;

using sprout::testing::mode_of;
using sprout::testing::ScopedUmask;

TEST(TraversableDirs, WhatItMakesIs0711WhateverTheUmask) {
  sprout::TempDir t("traversable");
  ScopedUmask strict(077);
  make_traversable_dirs(t.path() / "a" / "b" / "c");
  EXPECT_EQ(mode_of(t.path() / "a"), 0711u);
  EXPECT_EQ(mode_of(t.path() / "a" / "b"), 0711u);
  EXPECT_EQ(mode_of(t.path() / "a" / "b" / "c"), 0711u);
}

TEST(TraversableDirs, WhatExistsIsLeftAlone) {
  sprout::TempDir t("traversable");
  fs::create_directories(t.path() / "mine");
  ::chmod((t.path() / "mine").c_str(), 0700);
  make_traversable_dirs(t.path() / "mine" / "vms");
  EXPECT_EQ(mode_of(t.path() / "mine"), 0700u);
  EXPECT_EQ(mode_of(t.path() / "mine" / "vms"), 0711u);
  make_traversable_dirs(t.path() / "mine" / "vms");  // all there: nothing to do
  EXPECT_EQ(mode_of(t.path() / "mine" / "vms"), 0711u);
}

TEST(TraversableDirs, AFileInTheWayIsAnErrorNamingIt) {
  sprout::TempDir t("traversable");
  std::ofstream(t.path() / "f") << "x";
  try {
    make_traversable_dirs(t.path() / "f" / "vms");
    FAIL() << "no error";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find((t.path() / "f").string()), std::string::npos) << e.what();
  }
  try {
    make_traversable_dirs(t.path() / "f");
    FAIL() << "no error";
  } catch (const std::system_error& e) {
    EXPECT_EQ(e.code(), std::errc::not_a_directory) << e.what();
  }
}
