#include "narinfo_index.h"

#include <stdexcept>

#include <gtest/gtest.h>

namespace sprout {
namespace {

const std::string kA = "StorePath: /nix/store/aaaa-a\nURL: nar/aaaa.nar\nReferences: \n";
const std::string kB = "StorePath: /nix/store/bbbb-b\nURL: nar/bbbb.nar\nReferences: aaaa-a\n";

TEST(NarInfoIndex, SplitsWhatItJoinedByStorePath) {
  auto m = split_narinfo_index(narinfo_index_record(kA) + narinfo_index_record(kB));
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m.at("/nix/store/aaaa-a"), kA);
  EXPECT_EQ(m.at("/nix/store/bbbb-b"), kB);
  EXPECT_TRUE(split_narinfo_index("").empty());
  // The StorePath line need not come first.
  std::string later = "URL: nar/cccc.nar\nStorePath: /nix/store/cccc-c\n";
  EXPECT_EQ(split_narinfo_index(narinfo_index_record(later)).at("/nix/store/cccc-c"), later);
}

TEST(NarInfoIndex, RefusesWhatIsNotRecords) {
  for (std::string bad : {kA,                                    // no empty line after it
                          "\n" + narinfo_index_record(kA),       // an empty record
                          narinfo_index_record("URL: nar/x.nar\n"),  // no StorePath
                          narinfo_index_record("XStorePath: /nix/store/aaaa-a\n"),
                          narinfo_index_record(kA) + narinfo_index_record(kA)}) {  // twice
    EXPECT_THROW(split_narinfo_index(bad), std::runtime_error) << bad;
  }
}

}  // namespace
}  // namespace sprout
