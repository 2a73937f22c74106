#include "identity/secrets_source.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "base/temp_dir.h"
#include "error.h"

namespace sprout {
namespace {

namespace fs = std::filesystem;

void put(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

std::string refusal(const fs::path& dir) {
  try {
    read_secrets(dir);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(SecretsSource, RegularFilesSortedByName) {
  TempDir t("secrets");
  put(t.path() / "db-password", "hunter2");
  put(t.path() / "api.token", "abc");
  auto s = read_secrets(t.path());
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].name, "api.token");
  EXPECT_EQ(s[1].bytes, "hunter2");
}

TEST(SecretsSource, AnythingElseIsRefusedAndNamed) {
  TempDir outside("secrets-outside");
  put(outside.path() / "x", "x");
  {
    TempDir t("secrets-link");
    fs::create_symlink(outside.path() / "x", t.path() / "link");
    auto why = refusal(t.path());
    EXPECT_NE(why.find("link: is a symlink"), std::string::npos) << why;
  }
  {
    TempDir t("secrets-fifo");
    ASSERT_EQ(::mkfifo((t.path() / "pipe").c_str(), 0600), 0);
    EXPECT_NE(refusal(t.path()).find("pipe: is a FIFO"), std::string::npos);
  }
  if (::geteuid() == 0) {  // only root makes device nodes (CI runs as root)
    TempDir t("secrets-dev");
    ASSERT_EQ(::mknod((t.path() / "null").c_str(), S_IFCHR | 0600, ::makedev(1, 3)), 0);
    EXPECT_NE(refusal(t.path()).find("null: is a device"), std::string::npos);
  }
  {
    TempDir t("secrets-dir");
    fs::create_directory(t.path() / "sub");
    EXPECT_NE(refusal(t.path()).find("sub: is a directory"), std::string::npos);
  }
  {
    TempDir t("secrets-big");
    put(t.path() / "big", std::string(kMaxSecretBytes + 1, 'x'));
    EXPECT_NE(refusal(t.path()).find("big: larger than 1024 KiB"), std::string::npos);
  }
  {
    TempDir t("secrets-name");
    put(t.path() / "a b", "x");
    EXPECT_NE(refusal(t.path()).find("a b: the name of a secret has a character"), std::string::npos);
  }
  EXPECT_NE(refusal(outside.path() / "missing").find("cannot open"), std::string::npos);
}

TEST(SecretsSource, DigestIsKeyedAndCoversNamesAndBytes) {
  std::vector<SecretFile> a{{"pw", "1234"}}, b{{"pw", "1235"}}, c{{"pw2", "1234"}};
  EXPECT_EQ(secrets_digest(a, "k1"), secrets_digest(a, "k1"));
  EXPECT_NE(secrets_digest(a, "k1"), secrets_digest(a, "k2"));
  EXPECT_NE(secrets_digest(a, "k1"), secrets_digest(b, "k1"));
  EXPECT_NE(secrets_digest(a, "k1"), secrets_digest(c, "k1"));
  EXPECT_EQ(secrets_digest(a, "k1").size(), 64u);
}

}  // namespace
}  // namespace sprout
