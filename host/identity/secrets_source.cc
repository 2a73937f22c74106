#include "identity/secrets_source.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "base/sha256.h"
#include "error.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

std::string kind_of(mode_t m) {
  if (S_ISLNK(m)) return "a symlink";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
  return "not a regular file";
}

/// Reads the regular file `name` in `dirfd`, at most kMaxSecretBytes.
std::string read_secret(int dirfd, const fs::path& dir, const std::string& name) {
  const std::string path = (dir / name).string();
  // O_NONBLOCK: a FIFO put in the file's place since it was checked does not block.
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) throw InputError(fmt::format("{}: cannot read this secret: {}", path, std::strerror(errno)));
  std::unique_ptr<int, void (*)(int*)> closer(&fd, [](int* f) { ::close(*f); });
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
    throw InputError(fmt::format("{}: changed into something other than a regular file while it was read; run "
                                 "again",
                                 path));
  std::string bytes;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw InputError(fmt::format("{}: cannot read this secret: {}", path, std::strerror(errno)));
    if (n == 0) break;
    bytes.append(buf, static_cast<std::size_t>(n));
    if (bytes.size() > kMaxSecretBytes)
      throw InputError(fmt::format("{}: larger than {} KiB, the limit for one secret; a secret is a key or a "
                                   "password, not data: keep large files elsewhere",
                                   path, kMaxSecretBytes >> 10));
  }
  return bytes;
}

}  // namespace

std::string secret_name_problem(const std::string& name) {
  if (name.empty() || name.size() > 128) return "is not 1 to 128 bytes long";
  if (name[0] == '.') return "starts with a dot";
  for (unsigned char c : name)
    if (!(std::isalnum(c) || c == '.' || c == '_' || c == '-' || c == '@' || c == '+'))
      return "has a character other than letters, digits and . _ - @ +";
  return "";
}

std::vector<SecretFile> read_secrets(const fs::path& dir) {
  int dirfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0)
    throw InputError(fmt::format("{} (sources.secrets): cannot open this directory: {}", dir.string(),
                                 std::strerror(errno)));
  DIR* d = ::fdopendir(dirfd);
  if (!d) {
    int e = errno;
    ::close(dirfd);
    throw InputError(fmt::format("{} (sources.secrets): cannot list it: {}", dir.string(), std::strerror(e)));
  }
  std::unique_ptr<DIR, int (*)(DIR*)> closer(d, ::closedir);
  std::vector<SecretFile> secrets;
  std::size_t total = 0;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string path = (dir / name).string();
    if (auto p = secret_name_problem(name); !p.empty())
      throw InputError(fmt::format("{}: the name of a secret {}; rename it (the guest offers it as "
                                   "/run/sprout/secrets/NAME)",
                                   path, p));
    struct stat st;
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      throw InputError(fmt::format("{}: {}", path, std::strerror(errno)));
    if (!S_ISREG(st.st_mode))
      throw InputError(fmt::format("{}: is {}; sources.secrets holds regular files only, directly in it (copy the "
                                   "file itself in)",
                                   path, kind_of(st.st_mode)));
    if (secrets.size() == kMaxSecrets)
      throw InputError(fmt::format("{} (sources.secrets): more than {} files", dir.string(), kMaxSecrets));
    SecretFile f{name, read_secret(dirfd, dir, name)};
    total += f.bytes.size();
    if (total > kMaxSecretsTotalBytes)
      throw InputError(fmt::format("{} (sources.secrets): more than {} MiB together", dir.string(),
                                   kMaxSecretsTotalBytes >> 20));
    secrets.push_back(std::move(f));
  }
  std::sort(secrets.begin(), secrets.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return secrets;
}

std::string secrets_digest(const std::vector<SecretFile>& secrets, const std::string& key) {
  std::string text = "sprout-secrets-v1\n";
  for (const auto& s : secrets) text += fmt::format("{} {} {}\n", s.name, s.bytes.size(), sha256_hex(s.bytes));
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(text.data()),
            text.size(), out, &n))
    throw std::runtime_error("HMAC-SHA256 failed");
  return to_hex(out, n);
}

}  // namespace sprout
