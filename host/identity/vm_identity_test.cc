#include "identity/vm_identity.h"

#include <sys/stat.h>

#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "base/temp_dir.h"
#include "subprocess.h"

namespace sprout {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(VmIdentity, MintedOnceWithTheRealSshKeygenAndKept) {
  TempDir t("identity");
  StateDir state{t.path()};
  EXPECT_FALSE(read_identity(state));
  VmIdentity a = ensure_identity(state, "web");
  ASSERT_EQ(a.host_keys.size(), 1u);
  EXPECT_EQ(a.host_keys[0].type, "ssh-ed25519");
  EXPECT_EQ(a.machine_id.size(), 32u);
  EXPECT_EQ(a.machine_id[12], '4');  // a version 4 id
  // ssh-keygen -l agrees with the fingerprint computed here.
  std::string listed = run_checked({"ssh-keygen", "-l", "-E", "sha256", "-f", (a.dir / "ssh_host_ed25519_key.pub").string()});
  EXPECT_NE(listed.find(a.host_keys[0].fingerprint + " root@web"), std::string::npos) << listed;
  struct stat st;
  ASSERT_EQ(::stat(a.dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  for (const char* f : {"ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "machine-id", kSecretsDigestKeyFile}) {
    ASSERT_EQ(::stat((a.dir / f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << f;
  }
  VmIdentity b = ensure_identity(state, "web");
  EXPECT_EQ(b.machine_id, a.machine_id);
  EXPECT_EQ(b.host_keys[0].public_line, a.host_keys[0].public_line);
  // Another VM gets another identity.
  TempDir u("identity2");
  VmIdentity c = ensure_identity(StateDir{u.path()}, "db");
  EXPECT_NE(c.machine_id, a.machine_id);
  EXPECT_NE(c.host_keys[0].fingerprint, a.host_keys[0].fingerprint);
}

TEST(VmIdentity, IncompleteIsAnErrorNeverANewKey) {
  TempDir t("identity-broken");
  StateDir state{t.path()};
  VmIdentity a = ensure_identity(state, "web");
  fs::remove(a.dir / "machine-id");
  std::string before = slurp(a.dir / "ssh_host_ed25519_key.pub");
  try {
    ensure_identity(state, "web");
    FAIL() << "an incomplete identity was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("machine-id"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("never mints a new identity"), std::string::npos) << e.what();
  }
  EXPECT_EQ(slurp(a.dir / "ssh_host_ed25519_key.pub"), before);
}

TEST(VmIdentity, RotateReplacesTheKeyKeepsTheOldAndTheMachineId) {
  TempDir t("identity-rotate");
  StateDir state{t.path()};
  EXPECT_THROW(rotate_ssh_host_key(state, "web"), std::runtime_error);
  VmIdentity a = ensure_identity(state, "web");
  VmIdentity b = rotate_ssh_host_key(state, "web");
  EXPECT_NE(b.host_keys[0].fingerprint, a.host_keys[0].fingerprint);
  EXPECT_EQ(b.machine_id, a.machine_id);
  VmIdentity c = rotate_ssh_host_key(state, "web");
  int kept = 0;
  for (const auto& d : fs::directory_iterator(c.dir / "old")) {
    std::string pub = slurp(d.path() / "ssh_host_ed25519_key.pub");
    EXPECT_TRUE(pub.rfind(a.host_keys[0].public_line, 0) == 0 || pub.rfind(b.host_keys[0].public_line, 0) == 0);
    ++kept;
  }
  EXPECT_EQ(kept, 2);
  // Nothing of the swap is left behind.
  for (const auto& e : fs::directory_iterator(t.path()))
    EXPECT_TRUE(e.path().filename() == "identity" || e.path().filename() == "identity.lock") << e.path();
}

TEST(VmIdentity, RotationsAtOnceEachKeepTheKeyTheyReplace) {
  TempDir t("identity-race");
  StateDir state{t.path()};
  ensure_identity(state, "web");
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) threads.emplace_back([&] { rotate_ssh_host_key(state, "web"); });
  for (auto& th : threads) th.join();
  std::set<std::string> keys;
  for (const auto& d : fs::directory_iterator(t.path() / "identity" / "old"))
    keys.insert(slurp(d.path() / "ssh_host_ed25519_key.pub"));
  keys.insert(slurp(t.path() / "identity" / "ssh_host_ed25519_key.pub"));
  EXPECT_EQ(keys.size(), 4u);  // the first key and three new ones, none lost
}

TEST(VmIdentity, FingerprintRefusesWhatIsNotAKey) {
  EXPECT_THROW(ssh_fingerprint("garbage"), std::invalid_argument);
  EXPECT_THROW(ssh_fingerprint("ssh-ed25519 abc"), std::invalid_argument);
}

}  // namespace
}  // namespace sprout
