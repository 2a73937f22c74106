#include "identity/vm_identity.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "base/file_lock.h"
#include "base/leftovers.h"
#include "base/sha256.h"
#include "subprocess.h"
#include "whole_file.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

constexpr const char* kHostKeyFile = "ssh_host_ed25519_key";
constexpr const char* kMachineIdFile = "machine-id";
constexpr std::size_t kMaxIdentityFile = 16 << 10;

fs::path identity_dir(const StateDir& state) { return state.root / "identity"; }

[[noreturn]] void fail_unreadable(const fs::path& path, const std::string& why) {
  throw std::runtime_error(fmt::format("{}: {}; sprout never mints a new identity over one it cannot read: restore "
                                       "it, or fix its permissions (readable by the user sprout runs as)",
                                       path.string(), why));
}

/// A small file of the identity, read without following a link; nullopt when absent.
std::optional<std::string> read_small(const fs::path& path) {
  WholeFile f = read_whole_file(path, kMaxIdentityFile);
  if (f.error == ENOENT) return std::nullopt;
  if (!f) fail_unreadable(path, f.why(kMaxIdentityFile));
  return std::move(f.text);
}

std::string required(const fs::path& path) {
  auto text = read_small(path);
  if (!text) fail_unreadable(path, "missing (the identity is incomplete)");
  return *text;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string random_hex(std::size_t bytes, bool uuid_v4) {
  std::vector<std::uint8_t> b(bytes);
  std::size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::getrandom(b.data() + got, bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::system_error(errno, std::generic_category(), "cannot get random bytes");
    got += static_cast<std::size_t>(n);
  }
  if (uuid_v4 && bytes == 16) {  // as systemd's sd_id128_randomize(): a version 4, variant 1 UUID
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
  }
  return to_hex(b.data(), b.size());
}

bool is_machine_id(const std::string& s) {
  if (s.size() != 32 || s == std::string(32, '0')) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

void fsync_file(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::fsync(fd) != 0) {
    int e = errno;
    if (fd >= 0) ::close(fd);
    throw std::system_error(e, std::generic_category(), "cannot sync " + path.string());
  }
  ::close(fd);
}

/// A new, empty temporary directory for an identity being made (leftovers.h names).
fs::path fresh_temporary(const StateDir& state) {
  fs::path tmp = state.root / fmt::format(".identity.tmp-{}-0", ::getpid());
  std::error_code ec;
  remove_tree(tmp, ec);
  if (::mkdir(tmp.c_str(), 0700) != 0)
    throw std::system_error(errno, std::generic_category(), "cannot create " + tmp.string());
  return tmp;
}

/// A new ed25519 key pair in `dir`, by ssh-keygen; both files 0600.
void make_host_key(const fs::path& dir, const std::string& vm_name) {
  fs::path key = dir / kHostKeyFile;
  if (find_program("ssh-keygen").empty())
    throw std::runtime_error("ssh-keygen is not installed (Debian: openssh-client; NixOS: openssh): sprout makes "
                             "each VM's ssh host key with it");
  ProcessOptions p;
  p.argv = {"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "root@" + vm_name, "-f", key.string()};
  p.timeout = std::chrono::seconds(60);
  ProcessResult r = run_process(p);
  if (!r.ok())
    throw std::runtime_error(fmt::format("{} {}: {}", format_command(p.argv), r.describe(), trimmed(r.output)));
  for (const fs::path& f : {key, fs::path(key.string() + ".pub")}) {
    if (::chmod(f.c_str(), 0600) != 0)
      throw std::system_error(errno, std::generic_category(), "cannot chmod " + f.string());
    fsync_file(f);
  }
}

void copy_private(const fs::path& from, const fs::path& to) { write_file_atomic(to, required(from), 0600); }

/// Copies identity/old (earlier keys kept aside) into `to`.
void copy_kept_keys(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  if (!fs::is_directory(from, ec)) return;
  for (const auto& sub : fs::directory_iterator(from)) {
    if (!sub.is_directory() || sub.is_symlink()) continue;
    fs::path dest = to / sub.path().filename();
    fs::create_directories(dest);
    ::chmod(dest.c_str(), 0700);
    for (const auto& f : fs::directory_iterator(sub.path()))
      if (f.is_regular_file() && !f.is_symlink()) copy_private(f.path(), dest / f.path().filename());
  }
}

std::string utc_stamp() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

}  // namespace

struct IdentityLock::Held {
  FileLock lock;
};

IdentityLock::IdentityLock(const StateDir& state)
    : held_(new Held{FileLock(state.root / "identity.lock", FileLock::exclusive, std::chrono::minutes(2),
                              (state.root / "identity.lock").string() +
                                  ": another sprout has held the VM's identity for 2 minutes; try again")}) {}

IdentityLock::~IdentityLock() { delete held_; }

std::string ssh_fingerprint(std::string_view line) {
  auto sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 0) throw std::invalid_argument("not an OpenSSH public key line");
  std::string_view rest = line.substr(sp + 1);
  std::string_view b64 = rest.substr(0, rest.find_first_of(" \n"));
  if (b64.empty() || b64.size() % 4 != 0 || b64.size() > 8192)
    throw std::invalid_argument("not an OpenSSH public key line");
  std::vector<unsigned char> blob(b64.size() / 4 * 3 + 1);
  int n = EVP_DecodeBlock(blob.data(), reinterpret_cast<const unsigned char*>(b64.data()), static_cast<int>(b64.size()));
  if (n < 0) throw std::invalid_argument("the key is not base64");
  std::size_t pad = 0;
  for (std::size_t i = b64.size(); i > 0 && b64[i - 1] == '='; --i) ++pad;
  Sha256 h;
  h.update(blob.data(), static_cast<std::size_t>(n) - pad);
  auto digest = h.finish();
  unsigned char out[64];
  int m = EVP_EncodeBlock(out, digest.data(), static_cast<int>(digest.size()));
  std::string text(reinterpret_cast<char*>(out), static_cast<std::size_t>(m));
  while (!text.empty() && text.back() == '=') text.pop_back();
  return "SHA256:" + text;
}

std::optional<VmIdentity> read_identity(const StateDir& state) {
  const fs::path dir = identity_dir(state);
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return std::nullopt;
    fail_unreadable(dir, std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) fail_unreadable(dir, "not a directory");
  VmIdentity id;
  id.dir = dir;
  id.machine_id = trimmed(required(dir / kMachineIdFile));
  if (!is_machine_id(id.machine_id)) fail_unreadable(dir / kMachineIdFile, "not a machine-id (32 hex digits)");
  SshHostKey key;
  key.file_name = kHostKeyFile;
  key.public_line = trimmed(required(dir / (std::string(kHostKeyFile) + ".pub")));
  try {
    key.fingerprint = ssh_fingerprint(key.public_line);
  } catch (const std::invalid_argument& e) {
    fail_unreadable(dir / (std::string(kHostKeyFile) + ".pub"), e.what());
  }
  key.type = key.public_line.substr(0, key.public_line.find(' '));
  id.host_keys.push_back(key);
  for (const char* f : {kHostKeyFile, kSecretsDigestKeyFile})
    if (::access((dir / f).c_str(), R_OK) != 0) fail_unreadable(dir / f, std::strerror(errno));
  return id;
}

std::string read_identity_secret(const VmIdentity& id, const std::string& file_name) {
  return required(id.dir / file_name);
}

VmIdentity ensure_identity(const StateDir& state, const std::string& vm_name, bool locked) {
  if (auto id = read_identity(state)) return *id;
  std::optional<IdentityLock> lock;
  if (!locked) lock.emplace(state);
  if (auto id = read_identity(state)) return *id;  // minted while we waited
  const fs::path tmp = fresh_temporary(state);
  make_host_key(tmp, vm_name);
  write_file_atomic(tmp / kMachineIdFile, random_hex(16, true) + "\n", 0600);
  write_file_atomic(tmp / kSecretsDigestKeyFile, random_hex(32, false) + "\n", 0600);
  fsync_directory(tmp);
  const fs::path dir = identity_dir(state);
  if (::rename(tmp.c_str(), dir.c_str()) != 0) {
    int e = errno;
    std::error_code ec;
    remove_tree(tmp, ec);
    // Another export of this VM minted one first: that one is the identity.
    if (e != EEXIST && e != ENOTEMPTY) throw std::system_error(e, std::generic_category(), "cannot create " + dir.string());
  } else {
    fsync_directory(state.root);
    spdlog::info("{}: minted its identity in {} (ssh host key, machine-id)", vm_name, dir.string());
  }
  auto id = read_identity(state);
  if (!id) fail_unreadable(dir, "vanished while it was made");
  return *id;
}

VmIdentity rotate_ssh_host_key(const StateDir& state, const std::string& vm_name) {
  IdentityLock lock(state);  // two rotations never lose a key between them
  auto current = read_identity(state);
  if (!current)
    throw std::runtime_error(fmt::format("{} has no identity yet (in {}): `sprout prepare {}` mints one",
                                         vm_name, identity_dir(state).string(), vm_name));
  const fs::path dir = current->dir;
  const fs::path tmp = fresh_temporary(state);
  for (const char* f : {kMachineIdFile, kSecretsDigestKeyFile}) copy_private(dir / f, tmp / f);
  fs::create_directories(tmp / "old");
  ::chmod((tmp / "old").c_str(), 0700);
  copy_kept_keys(dir / "old", tmp / "old");
  std::string stamp = utc_stamp();
  for (int i = 1; fs::exists(tmp / "old" / stamp); ++i) stamp = fmt::format("{}-{}", utc_stamp(), i);
  fs::create_directories(tmp / "old" / stamp);
  ::chmod((tmp / "old" / stamp).c_str(), 0700);
  for (std::string f : {std::string(kHostKeyFile), std::string(kHostKeyFile) + ".pub"})
    copy_private(dir / f, tmp / "old" / stamp / f);
  make_host_key(tmp, vm_name);
  fsync_directory(tmp / "old" / stamp);
  fsync_directory(tmp / "old");
  fsync_directory(tmp);
  // One step: the directory is the old identity or the new one, never neither.
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) != 0) {
    int e = errno;
    std::error_code ec;
    remove_tree(tmp, ec);
    if (e == EINVAL || e == ENOSYS || e == ENOTSUP)
      throw std::runtime_error(fmt::format("{}: this file system cannot swap two directories in one step "
                                           "(renameat2 RENAME_EXCHANGE: {}), which a rotation needs so that the VM "
                                           "always has a whole identity; nothing was changed",
                                           state.root.string(), std::strerror(e)));
    throw std::system_error(e, std::generic_category(), "cannot replace " + dir.string());
  }
  fsync_directory(state.root);
  std::error_code ec;
  remove_tree(tmp, ec);  // now the identity as it was, kept in the new one's old/
  auto id = read_identity(state);
  if (!id) fail_unreadable(dir, "vanished while it was rotated");
  spdlog::info("{}: new ssh host key {} (the old one is kept in {})", vm_name, id->host_keys.front().fingerprint,
               (dir / "old" / stamp).string());
  return *id;
}

}  // namespace sprout
