#include "early.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "test_tree.h"

namespace sprout::agent {
namespace {

namespace fs = std::filesystem;
using testing::TempTree;

/// A disk with this virtio serial, as the kernel shows one in sysfs.
void add_disk(const TempTree& t, const std::string& name, const std::string& serial) {
  t.write("/sys/block/" + name + "/serial", serial + "\n");
  t.write("/sys/block/" + name + "/ro", "1\n");
  t.write("/sys/block/" + name + "/dev", "254:16\n");
  t.write("/dev/" + name, std::string(2048, '\0'));
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void put(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

/// "Mounts" by filling the mount point with what the secrets disk would hold.
class DiskMounter : public Mounter {
 public:
  explicit DiskMounter(std::string root) : root_(std::move(root)) {}
  std::vector<MountRequest> calls;
  std::string secret = "hunter2\n";
  MountResult mount(const MountRequest& r) override {
    calls.push_back(r);
    fs::path mp = root_ + r.mount_point;
    put(mp / "identity/ssh_host_ed25519_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nkey\n-----END OPENSSH PRIVATE KEY-----\n");
    put(mp / "identity/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA root@web\n");
    put(mp / "identity/machine-id", "0123456789abcdef0123456789abcdef\n");
    put(mp / "secrets/db-password", secret);
    return MountResult{true, false, ""};
  }
  std::map<std::string, std::string> options_of(const std::vector<std::string>&) override { return {}; }

 private:
  std::string root_;
};

mode_t mode_of(const fs::path& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

TEST(Early, InstallsTheHostKeyAndOffersTheSecretsToRootAlone) {
  TempTree t;
  add_disk(t, "vdb", "sprout-secrets");
  DiskMounter m(t.root().string());
  EarlyOptions o;
  o.root = t.root().string();
  o.disk_wait = std::chrono::milliseconds(0);
  ASSERT_EQ(run_early(o, m), 0);
  ASSERT_EQ(m.calls.size(), 1u);
  EXPECT_TRUE(m.calls[0].noexec);
  EXPECT_EQ(m.calls[0].mount_point, "/run/sprout/secrets-disk");
  EXPECT_EQ(mode_of(t.root().string() + "/run/sprout/secrets-disk"), 0700u);
  const fs::path ssh = t.root().string() + "/etc/ssh";
  EXPECT_EQ(slurp(ssh / "ssh_host_ed25519_key"),
            "-----BEGIN OPENSSH PRIVATE KEY-----\nkey\n-----END OPENSSH PRIVATE KEY-----\n");  // byte for byte
  EXPECT_EQ(mode_of(ssh / "ssh_host_ed25519_key"), 0600u);
  EXPECT_EQ(mode_of(ssh / "ssh_host_ed25519_key.pub"), 0644u);
  const fs::path secrets = t.root().string() + "/run/sprout/secrets";
  EXPECT_EQ(mode_of(secrets), 0700u);
  EXPECT_EQ(slurp(secrets / "db-password"), "hunter2\n");
  EXPECT_EQ(mode_of(secrets / "db-password"), 0400u);

  // A secret gone from the disk is gone from the guest; a changed one is replaced.
  put(secrets / "stale", "old");
  m.secret = "changed";
  ASSERT_EQ(run_early(o, m), 0);
  EXPECT_FALSE(fs::exists(secrets / "stale"));
  EXPECT_EQ(slurp(secrets / "db-password"), "changed");
}

TEST(Early, NoSecretsDiskIsNothingToDo) {
  TempTree t;
  DiskMounter m(t.root().string());
  EarlyOptions o;
  o.root = t.root().string();
  o.disk_wait = std::chrono::milliseconds(0);
  EXPECT_EQ(run_early(o, m), 0);
  EXPECT_TRUE(m.calls.empty());
  EXPECT_FALSE(fs::exists(t.root().string() + "/etc/ssh/ssh_host_ed25519_key"));
}

}  // namespace
}  // namespace sprout::agent
