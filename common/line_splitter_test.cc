#include "line_splitter.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sprout {
namespace {

struct Collect {
  explicit Collect(std::size_t max, LineSplitter::Overlong mode) : s(max, mode) {}
  void feed(std::string_view b) {
    s.feed(b, [&](std::string_view l) { lines.emplace_back(l); }, [&] { ++overlong; });
  }
  void finish() { s.finish([&](std::string_view l) { lines.emplace_back(l); }); }
  LineSplitter s;
  std::vector<std::string> lines;
  int overlong = 0;
};

using V = std::vector<std::string>;
constexpr auto kDrop = LineSplitter::Overlong::drop;
constexpr auto kSplit = LineSplitter::Overlong::split;

TEST(LineSplitter, LinesAcrossFeeds) {
  Collect c(100, kDrop);
  c.feed("one\ntw");
  EXPECT_EQ(c.lines, V{"one"});
  EXPECT_TRUE(c.s.has_partial());
  c.feed("o\r\n\nthree\n");
  EXPECT_EQ(c.lines, (V{"one", "two", "", "three"}));
  EXPECT_FALSE(c.s.has_partial());
}

TEST(LineSplitter, FinishHandsOutThePartialLine) {
  Collect c(100, kSplit);
  c.feed("a\nlast\r");
  c.finish();
  EXPECT_EQ(c.lines, (V{"a", "last"}));
  c.finish();  // nothing held any more
  EXPECT_EQ(c.lines.size(), 2u);
}

TEST(LineSplitter, ResetForgetsThePartialLine) {
  Collect c(100, kDrop);
  c.feed("half");
  c.s.reset();
  c.feed("new\n");
  EXPECT_EQ(c.lines, V{"new"});
}

TEST(LineSplitter, DropSkipsAnOverlongLineToItsNewline) {
  Collect c(4, kDrop);
  c.feed("1234\n12345\nok\n");
  EXPECT_EQ(c.lines, (V{"1234", "ok"}));
  EXPECT_EQ(c.overlong, 1);
  // Over-long across feeds: reported once, skipped up to its newline.
  c.feed("abc");
  c.feed("defgh");
  c.feed("ijk");
  EXPECT_FALSE(c.s.has_partial());
  c.feed("lm\nnext\n");
  EXPECT_EQ(c.lines, (V{"1234", "ok", "next"}));
  EXPECT_EQ(c.overlong, 2);
}

TEST(LineSplitter, DropCountsACarriageReturn) {
  Collect c(4, kDrop);
  c.feed("1234\r\n123\r\n");
  EXPECT_EQ(c.lines, V{"123"});
  EXPECT_EQ(c.overlong, 1);
}

TEST(LineSplitter, SplitCutsPieces) {
  Collect c(4, kSplit);
  c.feed("123456789\nab\n");
  EXPECT_EQ(c.lines, (V{"1234", "5678", "9", "ab"}));
  EXPECT_EQ(c.overlong, 0);
}

TEST(LineSplitter, SplitALineOfExactlyTheMaximumIsOneLine) {
  Collect c(4, kSplit);
  c.feed("12345678\n");
  EXPECT_EQ(c.lines, (V{"1234", "5678"}));  // no empty line after the last piece
  c.lines.clear();
  c.feed("abcd");  // full: held until it is known what follows
  EXPECT_TRUE(c.lines.empty());
  c.feed("\n\n");
  EXPECT_EQ(c.lines, (V{"abcd", ""}));  // the second newline is an empty line of its own
  c.lines.clear();
  c.feed("wxyz\r\n");
  EXPECT_EQ(c.lines, V{"wxyz"});
}

TEST(LineSplitter, SplitByteByByteMatchesOneFeed) {
  std::string in = "0123456789abcdef\nxy\r\n\n" + std::string(13, 'z') + "\n";
  Collect whole(5, kSplit), bytes(5, kSplit);
  whole.feed(in);
  for (char ch : in) bytes.feed(std::string_view(&ch, 1));
  EXPECT_EQ(whole.lines, bytes.lines);
  EXPECT_EQ(whole.lines, (V{"01234", "56789", "abcde", "f", "xy", "", "zzzzz", "zzzzz", "zzz"}));
}

TEST(LineSplitter, DropByteByByteMatchesOneFeed) {
  std::string in = "short\nmuch too long\nok\n";
  Collect whole(5, kDrop), bytes(5, kDrop);
  whole.feed(in);
  for (char ch : in) bytes.feed(std::string_view(&ch, 1));
  EXPECT_EQ(whole.lines, bytes.lines);
  EXPECT_EQ(whole.lines, (V{"short", "ok"}));
  EXPECT_EQ(bytes.overlong, 1);
}

}  // namespace
}  // namespace sprout
