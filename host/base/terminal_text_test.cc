#include "base/terminal_text.h"

#include <gtest/gtest.h>

using sprout::for_terminal;

TEST(TerminalText, PlainTextAndUnicodePassUnchanged) {
  EXPECT_EQ(for_terminal("nixos-rebuild boot: building 'x' (3/7) ✓ größer"), "nixos-rebuild boot: building 'x' (3/7) ✓ größer");
}

TEST(TerminalText, ControlCharactersAreVisible) {
  EXPECT_EQ(for_terminal("a\x1b[2J\rvm1 specialized\n"), "a\\x1b[2J\\x0dvm1 specialized\\x0a");
  EXPECT_EQ(for_terminal(std::string("nul\0tab\tdel\x7f", 12)), "nul\\x00tab\\x09del\\x7f");
}

TEST(TerminalText, C1AndBidiControlsAreVisible) {
  EXPECT_EQ(for_terminal("\xc2\x9b" "31m"), "\\u009b31m");  // CSI as a C1 character
  EXPECT_EQ(for_terminal("ok \xe2\x80\xae" "deliaf"), "ok \\u202edeliaf");
}

TEST(TerminalText, InvalidUtf8BytesAreVisible) {
  EXPECT_EQ(for_terminal("\xff\xfe ok \xc0\xaf"), "\\xff\\xfe ok \\xc0\\xaf");
  EXPECT_EQ(for_terminal("cut \xe2\x80"), "cut \\xe2\\x80");
}

TEST(TerminalText, ColumnsAndEllipsis) {
  using sprout::ellipsize;
  using sprout::utf8_columns;
  EXPECT_EQ(utf8_columns("abc"), 3u);
  EXPECT_EQ(utf8_columns("h\u00e9llo"), 5u);  // one column for a two-byte character
  EXPECT_EQ(ellipsize("abcdef", 6), "abcdef");
  EXPECT_EQ(ellipsize("abcdefg", 6), "abcde\u2026");
  EXPECT_EQ(utf8_columns(ellipsize("h\u00e9\u00e9\u00e9llo world", 5)), 5u);
  EXPECT_EQ(ellipsize("abc", 0), "");
}
