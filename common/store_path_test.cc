#include "store_path.h"

#include <gtest/gtest.h>

using namespace sprout;

TEST(StorePath, AcceptsToplevels) {
  EXPECT_EQ(store_path_problem("/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-nixos-system-web-24.05"), "");
  EXPECT_EQ(store_path_problem("/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-a+b?c=d_e.f"), "");
  EXPECT_EQ(store_path_hash("/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-x"), "4s6j5z57rq0xbzlxcp946k44a2f6097y");
}

TEST(StorePath, RefusesWhatIsNotOne) {
  EXPECT_NE(store_path_problem(""), "");
  EXPECT_NE(store_path_problem("/etc/nixos"), "");
  EXPECT_NE(store_path_problem("/nix/store"), "");
  EXPECT_NE(store_path_problem("/nix/store/"), "");
  EXPECT_NE(store_path_problem("nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-x"), "");
  EXPECT_NE(store_path_problem("/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-x/bin"), "");  // inside
  EXPECT_NE(store_path_problem("/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-"), "");       // no name
  EXPECT_NE(store_path_problem("/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097yx"), "");       // no dash
  EXPECT_NE(store_path_problem("/nix/store/es6j5z57rq0xbzlxcp946k44a2f6097y-x"), "");      // 'e'
  EXPECT_NE(store_path_problem("/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-.x"), "");
  EXPECT_NE(store_path_problem("/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-a b"), "");
  EXPECT_NE(store_path_problem(std::string("/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-a\0b", 46)), "");
  EXPECT_NE(store_path_problem("/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-" + std::string(212, 'a')), "");
}
