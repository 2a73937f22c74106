#include "nar_hash.h"

#include <gtest/gtest.h>

namespace sprout {
namespace {

TEST(NarHash, ComparesNarHashesInHexAndNixBase32) {
  // A NAR hash as `nix-store --dump-db` prints it and as `nix copy` writes it into a
  // narinfo (Debian's nix 2.8, the same path).
  const std::string hex = "bb784661969bf1789cfaa4b3a4ac91d81d5604a5a43ca9c26168381428406e0f";
  EXPECT_EQ(nix_base32_of_hex(hex), "03vf80l18f38c71ajg54ll25c7fqj6na9cx4zaf7iwcvjrhlcy5v");
  EXPECT_TRUE(same_nar_hash("sha256:" + hex, hex));
  EXPECT_TRUE(same_nar_hash("sha256:03vf80l18f38c71ajg54ll25c7fqj6na9cx4zaf7iwcvjrhlcy5v", hex));
  std::string other = hex;
  other[0] = 'c';
  EXPECT_FALSE(same_nar_hash("sha256:" + hex, other));
  EXPECT_FALSE(same_nar_hash("sha256:03vf80l18f38c71ajg54ll25c7fqj6na9cx4zaf7iwcvjrhlcy5v", other));
  EXPECT_FALSE(same_nar_hash("md5:" + hex, hex));
  EXPECT_FALSE(same_nar_hash("sha256:short", hex));
}

}  // namespace
}  // namespace sprout
