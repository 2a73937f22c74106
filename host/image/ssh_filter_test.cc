#include "image/ssh_filter.h"

#include <sys/stat.h>

#include <fstream>

#include <gtest/gtest.h>

#include "error.h"
#include "image/tree_digest.h"

using namespace sprout;
namespace fs = std::filesystem;

class SshFilterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("sprout-ssh-" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream(dir / "authorized_keys") << "ssh-ed25519 AAAA user@host\n";
    std::ofstream(dir / "id_ed25519.pub") << "ssh-ed25519 AAAA user@host\n";
    std::ofstream(dir / "known_hosts") << "host ssh-ed25519 AAAA\n";
    std::ofstream(dir / "id_ed25519") << "-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n-----END OPENSSH PRIVATE KEY-----\n";
    std::ofstream(dir / "deploy.pub") << "-----BEGIN RSA PRIVATE KEY-----\nsneaky\n";  // lies by name
    std::ofstream(dir / "notes.txt") << "hello\n";
  }
  void TearDown() override { fs::remove_all(dir); }
  std::vector<std::string> kept(bool allow) {
    SshFilter f(allow);
    std::vector<std::string> out;
    walk_tree(dir, [&](const TreeEntry& e) { if (!e.rel.empty()) out.push_back(e.rel); }, std::ref(f));
    return out;
  }
  fs::path dir;
};

TEST_F(SshFilterTest, OnlyPublicMaterialByDefault) {
  EXPECT_EQ(kept(false), (std::vector<std::string>{"authorized_keys", "id_ed25519.pub", "known_hosts"}));
}

TEST_F(SshFilterTest, ReasonsAreReported) {
  SshFilter f(false);
  walk_tree(dir, [](const TreeEntry&) {}, std::ref(f));
  ASSERT_EQ(f.excluded().size(), 3u);
  EXPECT_EQ(f.excluded()[0].path, "deploy.pub");
  EXPECT_EQ(f.excluded()[0].reason, "private key (found by its content)");
  EXPECT_EQ(f.excluded()[1].path, "id_ed25519");
  EXPECT_EQ(f.excluded()[2].path, "notes.txt");
}

TEST_F(SshFilterTest, ExplicitFlagExportsEverything) { EXPECT_EQ(kept(true).size(), 6u); }

// The filter judges a file by its content: it must be the file that was listed (and
// that the export will read), or the export stops.
TEST_F(SshFilterTest, AFileSwappedSinceTheListingIsAnError) {
  struct stat listed;
  ASSERT_EQ(::lstat((dir / "known_hosts").c_str(), &listed), 0);
  EXPECT_FALSE(looks_like_private_key((dir / "known_hosts").string(), &listed));
  fs::rename(dir / "id_ed25519", dir / "known_hosts");  // another inode under the listed name
  EXPECT_THROW(looks_like_private_key((dir / "known_hosts").string(), &listed), InputError);
}
