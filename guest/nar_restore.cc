#include "nar_restore.h"

// OpenSSL's one-shot SHA-256 (SHA256_Init/Update/Final): deprecated in 3.0 for EVP,
// which would link its provider machinery into the agent; the low-level calls link
// the hash alone (about 20 kB, statically where a static libcrypto exists).
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

#include "nar_checksum.h"

namespace sprout::agent {

namespace {

constexpr std::size_t kBufferSize = 1 << 20;
constexpr std::size_t kMaxTag = 64;          // "nix-archive-1", "type", "contents", ...
constexpr std::size_t kMaxName = 255;        // NAME_MAX
constexpr std::size_t kMaxTarget = 4095;     // PATH_MAX - 1
constexpr int kMaxDepth = 256;  // a directory descriptor held open at each level

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

/// Whether this process writes into a directory whatever its mode (CAP_DAC_OVERRIDE,
/// the agent's as root): then a directory is made 0555 at once, not chmodded when
/// full, one system call fewer a directory.
bool overrides_modes() {
  static const bool yes = [] {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capget, &header, data) != 0) return false;
    return (data[CAP_DAC_OVERRIDE / 32].effective & (1u << (CAP_DAC_OVERRIDE % 32))) != 0;
  }();
  return yes;
}

[[noreturn]] void fail_call(const char* call, const std::string& entry) {
  throw std::system_error(errno, std::generic_category(), fmt::format("{} {}", call, entry));
}

class Restorer {
 public:
  Restorer(int nar_fd, const std::string& what, std::vector<char>& buffer, NarDigest digest)
      : fd_(nar_fd), what_(what), buf_(buffer), kind_(digest) {
    if (buf_.size() < kBufferSize) buf_.resize(kBufferSize);
    SHA256_Init(&sha_);
  }

  NarRestored run(int dir_fd, const std::string& name) {
    expect("nix-archive-1", "the NAR's magic");
    node(dir_fd, name, name, 0);
    if (fill() != 0) malformed("bytes after the end of the archive");
    if (kind_ == NarDigest::xxh3_128) {
      out_.digest_hex = xxh3_.hex();
    } else {
      unsigned char digest[SHA256_DIGEST_LENGTH];
      SHA256_Final(digest, &sha_);
      static const char kHex[] = "0123456789abcdef";
      for (unsigned char c : digest) out_.digest_hex += {kHex[c >> 4], kHex[c & 15]};
    }
    out_.size = total_;
    return out_;
  }

 private:
  /// Bytes available in the buffer, reading (and hashing) more when it is empty; 0 at EOF.
  std::size_t fill() {
    if (pos_ < end_) return end_ - pos_;
    for (;;) {
      ssize_t n = ::read(fd_, buf_.data(), buf_.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail_call("read", what_);
      pos_ = 0;
      end_ = static_cast<std::size_t>(n);
      if (kind_ == NarDigest::xxh3_128)
        xxh3_.update(buf_.data(), end_);
      else
        SHA256_Update(&sha_, buf_.data(), end_);
      total_ += end_;
      return end_;
    }
  }

  void read_into(void* dst, std::size_t n) {
    auto* p = static_cast<char*>(dst);
    while (n > 0) {
      std::size_t have = fill();
      if (have == 0) malformed("it ends early");
      std::size_t take = std::min(have, n);
      std::memcpy(p, buf_.data() + pos_, take);
      pos_ += take;
      p += take;
      n -= take;
    }
  }

  std::uint64_t number() {
    unsigned char b[8];
    read_into(b, 8);
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];
    return v;
  }

  void padding(std::uint64_t len) {
    std::size_t pad = static_cast<std::size_t>((8 - len % 8) % 8);
    char z[8];
    read_into(z, pad);
    for (std::size_t i = 0; i < pad; ++i)
      if (z[i] != 0) malformed("a string's padding is not zero");
  }

  std::string string(std::size_t max, const char* what) {
    std::uint64_t len = number();
    if (len > max) malformed(fmt::format("{} of {} bytes (at most {})", what, len, max));
    std::string s(static_cast<std::size_t>(len), '\0');
    read_into(s.data(), s.size());
    padding(len);
    return s;
  }

  void expect(const char* tag, const char* where) {
    std::string s = string(kMaxTag, "a tag");
    if (s != tag) malformed(fmt::format("expected \"{}\" ({}), found \"{}\"", tag, where, printable(s)));
  }

  static std::string printable(const std::string& s) {
    std::string out;
    for (unsigned char c : s) out += (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? std::string(1, c) : fmt::format("\\x{:02x}", c);
    return out;
  }

  [[noreturn]] void malformed(const std::string& why) {
    throw std::runtime_error(fmt::format("{} is not a valid NAR: {} (at byte {})", what_, why, total_ - (end_ - pos_)));
  }

  void node(int dir_fd, const std::string& name, const std::string& shown, int depth) {
    if (depth > kMaxDepth) malformed(fmt::format("directories nested deeper than {}", kMaxDepth));
    expect("(", "a node");
    expect("type", "a node's type");
    std::string type = string(kMaxTag, "a type");
    if (type == "regular") {
      regular(dir_fd, name, shown);
    } else if (type == "symlink") {
      expect("target", "a symlink's target");
      std::string target = string(kMaxTarget, "a symlink's target");
      if (target.empty() || target.find('\0') != std::string::npos) malformed("a symlink's target is empty or has NUL");
      if (::symlinkat(target.c_str(), dir_fd, name.c_str()) != 0) fail_call("symlink", shown);
      set_mtime(dir_fd, name, shown, AT_SYMLINK_NOFOLLOW);
      ++out_.symlinks;
      expect(")", "the end of a symlink");
    } else if (type == "directory") {
      directory(dir_fd, name, shown, depth);
    } else {
      malformed(fmt::format("unknown node type \"{}\"", printable(type)));
    }
  }

  void regular(int dir_fd, const std::string& name, const std::string& shown) {
    std::string tag = string(kMaxTag, "a tag");
    bool executable = false;
    if (tag == "executable") {
      if (!string(kMaxTag, "the executable flag").empty()) malformed("the executable flag is not empty");
      executable = true;
      tag = string(kMaxTag, "a tag");
    }
    if (tag != "contents") malformed(fmt::format("expected \"contents\", found \"{}\"", printable(tag)));
    std::uint64_t len = number();
    Fd f(::openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                  executable ? 0555 : 0444));
    if (f.fd < 0) fail_call("create", shown);
    for (std::uint64_t left = len; left > 0;) {
      std::size_t have = fill();
      if (have == 0) malformed("it ends inside a file's contents");
      std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(have, left));
      for (std::size_t done = 0; done < take;) {
        ssize_t n = ::write(f.fd, buf_.data() + pos_ + done, take - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail_call("write", shown);
        done += static_cast<std::size_t>(n);
      }
      pos_ += take;
      left -= take;
    }
    padding(len);
    struct timespec times[2] = {{0, UTIME_OMIT}, {1, 0}};
    if (::futimens(f.fd, times) != 0) fail_call("set the modification time of", shown);
    ++out_.files;
    expect(")", "the end of a file");
  }

  void directory(int dir_fd, const std::string& name, const std::string& shown, int depth) {
    const bool at_once = overrides_modes();
    if (::mkdirat(dir_fd, name.c_str(), at_once ? 0555 : 0755) != 0) fail_call("mkdir", shown);
    Fd d(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (d.fd < 0) fail_call("open", shown);
    std::string previous;
    bool first = true;
    for (;;) {
      std::string tag = string(kMaxTag, "a tag");
      if (tag == ")") break;
      if (tag != "entry") malformed(fmt::format("expected \"entry\" or \")\" in {}, found \"{}\"", shown, printable(tag)));
      expect("(", "an entry");
      expect("name", "an entry's name");
      std::string entry = string(kMaxName, "a name");
      if (entry.empty() || entry == "." || entry == ".." || entry.find('/') != std::string::npos ||
          entry.find('\0') != std::string::npos)
        malformed(fmt::format("an entry of {} is named \"{}\"", shown, printable(entry)));
      if (!first && entry <= previous)
        malformed(fmt::format("the entries of {} are not in order (\"{}\" after \"{}\")", shown, printable(entry),
                              printable(previous)));
      first = false;
      previous = entry;
      expect("node", "an entry's node");
      node(d.fd, entry, shown + "/" + entry, depth + 1);
      expect(")", "the end of an entry");
    }
    if (!at_once && ::fchmod(d.fd, 0555) != 0) fail_call("chmod", shown);
    struct timespec times[2] = {{0, UTIME_OMIT}, {1, 0}};
    if (::futimens(d.fd, times) != 0) fail_call("set the modification time of", shown);
    ++out_.directories;
  }

  void set_mtime(int dir_fd, const std::string& name, const std::string& shown, int flags) {
    struct timespec times[2] = {{0, UTIME_OMIT}, {1, 0}};
    if (::utimensat(dir_fd, name.c_str(), times, flags) != 0) fail_call("set the modification time of", shown);
  }

  int fd_;
  const std::string& what_;
  std::vector<char>& buf_;
  std::size_t pos_ = 0, end_ = 0;
  std::uint64_t total_ = 0;
  NarDigest kind_;
  SHA256_CTX sha_;
  NarChecksum xxh3_;
  NarRestored out_;
};

std::string remove_below(int dir_fd, const std::string& name, const std::string& shown) {
  struct stat st;
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? "" : fmt::format("stat {}: {}", shown, std::strerror(errno));
  if (S_ISDIR(st.st_mode)) {
    ::fchmodat(dir_fd, name.c_str(), 0700, 0);  // a store directory is 0555
    int fd = ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return fmt::format("open {}: {}", shown, std::strerror(errno));
    DIR* dir = ::fdopendir(fd);
    if (!dir) {
      ::close(fd);
      return fmt::format("open {}: {}", shown, std::strerror(errno));
    }
    std::vector<std::string> names;
    while (struct dirent* e = ::readdir(dir))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
    std::string err;
    for (const auto& n : names)
      if (err.empty()) err = remove_below(::dirfd(dir), n, shown + "/" + n);
    ::closedir(dir);
    if (!err.empty()) return err;
    if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0)
      return fmt::format("rmdir {}: {}", shown, std::strerror(errno));
    return "";
  }
  if (::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT)
    return fmt::format("remove {}: {}", shown, std::strerror(errno));
  return "";
}

}  // namespace

NarRestored restore_nar(int nar_fd, int dir_fd, const std::string& name, const std::string& what,
                        std::vector<char>& buffer, NarDigest digest) {
  return Restorer(nar_fd, what, buffer, digest).run(dir_fd, name);
}

std::string remove_tree(const std::string& path) {
  std::size_t slash = path.rfind('/');
  std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? "" : fmt::format("open {}: {}", parent, std::strerror(errno));
  std::string err = remove_below(fd, name, path);
  ::close(fd);
  return err;
}

}  // namespace sprout::agent
