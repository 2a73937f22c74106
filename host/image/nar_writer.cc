#include "image/nar_writer.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "base/sha256.h"

namespace sprout {

namespace {

constexpr std::size_t kBuffer = 256 << 10;

/// Collects the NAR's bytes in one buffer, hashing them, and hands the buffer to the
/// sink when it is full (file contents of a buffer or more go through directly).
class NarOut {
 public:
  explicit NarOut(const NarSink& sink) : sink_(sink), buf_(new char[kBuffer]) {}

  void bytes(const char* data, std::size_t n) {
    if (used_ + n > kBuffer) flush();
    if (n >= kBuffer) {
      emit(data, n);
      return;
    }
    std::memcpy(buf_.get() + used_, data, n);
    used_ += n;
  }
  void u64(std::uint64_t v) {
    char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xff);
    bytes(b, 8);
  }
  void pad(std::uint64_t len) {
    static const char zeros[8] = {};
    if (len % 8) bytes(zeros, 8 - len % 8);
  }
  /// A NAR string: its length, its bytes, zeros to a multiple of 8.
  void str(std::string_view s) {
    u64(s.size());
    bytes(s.data(), s.size());
    pad(s.size());
  }
  void flush() {
    if (used_) emit(buf_.get(), used_);
    used_ = 0;
  }
  NarDump finish() {
    flush();
    return NarDump{total_, hash_.finish_hex()};
  }

 private:
  void emit(const char* data, std::size_t n) {
    hash_.update(data, n);
    total_ += n;
    sink_(data, n);
  }

  const NarSink& sink_;
  std::unique_ptr<char[]> buf_;
  std::size_t used_ = 0;
  std::uint64_t total_ = 0;
  Sha256 hash_;
};

[[noreturn]] void sys_fail(const std::string& what) { throw std::system_error(errno, std::generic_category(), what); }

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

void dump_file(NarOut& out, const std::string& path, const struct stat& st) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) sys_fail(path);
  if (st.st_mode & S_IXUSR) {
    out.str("executable");
    out.str("");
  }
  out.str("contents");
  const auto size = static_cast<std::uint64_t>(st.st_size);
  out.u64(size);
  thread_local std::unique_ptr<char[]> chunk(new char[kBuffer]);
  std::uint64_t left = size;
  while (left > 0) {
    ssize_t n = ::read(fd.get(), chunk.get(), static_cast<std::size_t>(std::min<std::uint64_t>(left, kBuffer)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) sys_fail(path);
    if (n == 0) throw std::runtime_error(fmt::format("{} shrank while it was read ({} bytes short)", path, left));
    out.bytes(chunk.get(), static_cast<std::size_t>(n));
    left -= static_cast<std::uint64_t>(n);
  }
  char extra;
  ssize_t more = ::read(fd.get(), &extra, 1);
  if (more > 0) throw std::runtime_error(fmt::format("{} grew while it was read", path));
  out.pad(size);
}

void dump(NarOut& out, const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) sys_fail(path);
  out.str("(");
  out.str("type");
  if (S_ISREG(st.st_mode)) {
    out.str("regular");
    dump_file(out, path, st);
  } else if (S_ISLNK(st.st_mode)) {
    out.str("symlink");
    std::string target(static_cast<std::size_t>(st.st_size) + 1, '\0');
    ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
    if (n < 0) sys_fail(path);
    if (static_cast<std::size_t>(n) >= target.size())
      throw std::runtime_error(fmt::format("{}: the symlink changed while it was read", path));
    target.resize(static_cast<std::size_t>(n));
    out.str("target");
    out.str(target);
  } else if (S_ISDIR(st.st_mode)) {
    out.str("directory");
    std::vector<std::string> names;
    {
      std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(path.c_str()), ::closedir);
      if (!d) sys_fail(path);
      errno = 0;
      while (struct dirent* e = ::readdir(d.get())) {
        std::string_view n = e->d_name;
        if (n != "." && n != "..") names.emplace_back(n);
        errno = 0;
      }
      if (errno) sys_fail(path);
    }
    std::sort(names.begin(), names.end());  // byte order, as Nix's std::map
    for (const auto& name : names) {
      out.str("entry");
      out.str("(");
      out.str("name");
      out.str(name);
      out.str("node");
      dump(out, path + "/" + name);
      out.str(")");
    }
  } else {
    throw std::runtime_error(
        fmt::format("{} is neither a file, a directory nor a symlink: a Nix store path cannot hold it", path));
  }
  out.str(")");
}

}  // namespace

NarDump write_nar(const std::string& path, const NarSink& sink) {
  NarOut out(sink);
  out.str("nix-archive-1");
  dump(out, path);
  return out.finish();
}

}  // namespace sprout
