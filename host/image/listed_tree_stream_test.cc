// The read-ahead stream of a listing: every wanted file's bytes arrive in order with
// their hash, a change after the listing arrives as the error, and a stream given up
// half way (its reader blocked on a full queue) ends without hanging.
#include "image/listed_tree_stream.h"

#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "base/temp_dir.h"

#include "error.h"
#include "base/sha256.h"

using namespace sprout;
namespace fs = std::filesystem;

namespace {

class ListedTreeStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(base / "d");
    std::ofstream(base / "a") << "first\n";
    std::ofstream(base / "d" / "big", std::ios::binary) << std::string(20 << 20, 'x');
    std::ofstream(base / "d" / "z") << "";
  }
  static std::vector<bool> files(const TreeListing& l) {
    std::vector<bool> w;
    for (const auto& e : l.entries) w.push_back(S_ISREG(e.st.st_mode));
    return w;
  }
  TempDir tmp{"stream"};
  fs::path base = tmp.path();
};

TEST_F(ListedTreeStreamTest, EveryFileArrivesInOrderWithItsHash) {
  TreeListing l = list_tree(base);
  ListedTreeStream s(l, files(l));
  std::vector<std::string> seen;
  for (std::size_t i = 0; i < l.entries.size(); ++i) {
    if (!S_ISREG(l.entries[i].st.st_mode)) continue;
    std::string bytes;
    for (;;) {
      auto c = s.next();
      ASSERT_EQ(c.entry, i);
      bytes += c.data;
      if (c.last) {
        EXPECT_EQ(c.hash, sha256_hex(bytes)) << l.entries[i].rel;
        break;
      }
    }
    seen.push_back(l.entries[i].rel + ":" + std::to_string(bytes.size()));
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"a:6", "d/big:20971520", "d/z:0"}));
}

TEST_F(ListedTreeStreamTest, AChangeAfterTheListingIsTheError) {
  TreeListing l = list_tree(base);
  std::ofstream(base / "a", std::ios::app) << "more\n";
  ListedTreeStream s(l, files(l));
  EXPECT_THROW(s.next(), InputError);
}

TEST_F(ListedTreeStreamTest, AStreamGivenUpHalfWayEnds) {
  TreeListing l = list_tree(base);
  auto s = std::make_unique<ListedTreeStream>(l, files(l));
  s->next();  // "a"; the reader then fills its queue with d/big and waits
  s.reset();  // must return
  SUCCEED();
}

}  // namespace
