#include "tree_copy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "error.h"
#include "sha256.h"
#include "tree_digest.h"

namespace sprout {

namespace {

struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      if (fd >= 0) ::close(fd);
      fd = o.fd;
      o.fd = -1;
    }
    return *this;
  }
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

[[noreturn]] void sys_fail(const std::string& what) { throw std::system_error(errno, std::generic_category(), what); }

[[noreturn]] void changed(const TreeEntry& e, const char* how) {
  throw InputError(fmt::format("{}: {} since it was listed; nothing was exported from the changed tree, run the "
                               "export again",
                               e.abs, how));
}

bool same_time(const struct timespec& a, const struct timespec& b) { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; }

/// The open inode is the listed one, unchanged.
void check_same(const TreeEntry& e, const struct stat& now) {
  const auto& was = e.st;
  if (now.st_dev != was.st_dev || now.st_ino != was.st_ino || (now.st_mode & S_IFMT) != (was.st_mode & S_IFMT))
    changed(e, "was replaced");
  if (S_ISREG(was.st_mode) && (now.st_size != was.st_size || !same_time(now.st_mtim, was.st_mtim) ||
                               !same_time(now.st_ctim, was.st_ctim)))
    changed(e, "changed");
}

std::string parent_of(const std::string& rel) {
  auto slash = rel.rfind('/');
  return slash == std::string::npos ? std::string() : rel.substr(0, slash);
}

std::string name_of(const std::string& rel) {
  auto slash = rel.rfind('/');
  return slash == std::string::npos ? rel : rel.substr(slash + 1);
}

/// Open source and destination directories along the current path, root first.
class DirStack {
 public:
  DirStack(const TreeListing& listing, const std::filesystem::path& dst) : listing_(listing) {
    const TreeEntry& root = listing.entries.front();
    // The root was given by the user and may be a symlink (list_tree follows it once).
    Fd src(::open(root.abs.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (src.fd < 0) sys_fail(root.abs);
    struct stat st;
    if (::fstat(src.fd, &st) != 0) sys_fail(root.abs);
    if (st.st_dev != root.st.st_dev || st.st_ino != root.st.st_ino) changed(root, "was replaced");
    Fd out(::open(dst.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (out.fd < 0) sys_fail(dst.string());
    stack_.push_back({"", std::move(src), std::move(out)});
    for (std::size_t i = 0; i < listing.entries.size(); ++i)
      if (S_ISDIR(listing.entries[i].st.st_mode)) dirs_.emplace(listing.entries[i].rel, i);
  }

  /// The (source, destination) descriptors of directory `rel`, opening what is needed.
  std::pair<int, int> at(const std::string& rel) {
    while (!is_prefix(stack_.back().rel, rel)) stack_.pop_back();
    while (stack_.back().rel != rel) {
      const std::string& top = stack_.back().rel;
      auto slash = rel.find('/', top.empty() ? 0 : top.size() + 1);
      std::string next = rel.substr(0, slash);
      const TreeEntry& e = listing_.entries.at(dirs_.at(next));
      std::string name = name_of(next);
      Fd src(::openat(stack_.back().src.fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (src.fd < 0) {
        if (errno == ELOOP || errno == ENOTDIR || errno == ENOENT) changed(e, "was replaced");
        sys_fail(e.abs);
      }
      struct stat st;
      if (::fstat(src.fd, &st) != 0) sys_fail(e.abs);
      check_same(e, st);
      Fd out(::openat(stack_.back().dst.fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (out.fd < 0) sys_fail("staging " + next);
      stack_.push_back({next, std::move(src), std::move(out)});
    }
    return {stack_.back().src.fd, stack_.back().dst.fd};
  }

 private:
  static bool is_prefix(const std::string& dir, const std::string& rel) {
    return dir.empty() || rel == dir || (rel.size() > dir.size() && rel.compare(0, dir.size(), dir) == 0 &&
                                         rel[dir.size()] == '/');
  }
  struct Level {
    std::string rel;
    Fd src, dst;
  };
  const TreeListing& listing_;
  std::map<std::string, std::size_t> dirs_;
  std::vector<Level> stack_;
};

/// Copies one listed regular file; returns the hash of the bytes copied.
std::string copy_file(const TreeEntry& e, int src_dir, int dst_dir, const std::string& name) {
  Fd in(::openat(src_dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
  if (in.fd < 0) {
    if (errno == ELOOP || errno == ENOENT) changed(e, "was replaced");
    if (errno == EACCES) throw InputError(fmt::format("{}: file is not readable (fix its permissions)", e.abs));
    sys_fail(e.abs);
  }
  struct stat st;
  if (::fstat(in.fd, &st) != 0) sys_fail(e.abs);
  check_same(e, st);
  Fd out(::openat(dst_dir, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (out.fd < 0) sys_fail("staging " + e.rel);
  static thread_local std::vector<char> buf(256 << 10);
  Sha256 h;
  std::uint64_t total = 0;
  for (;;) {
    ssize_t n = ::read(in.fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      sys_fail(e.abs);
    }
    if (n == 0) break;
    h.update(buf.data(), static_cast<std::size_t>(n));
    total += static_cast<std::uint64_t>(n);
    for (ssize_t off = 0; off < n;) {
      ssize_t w = ::write(out.fd, buf.data() + off, static_cast<std::size_t>(n - off));
      if (w < 0) {
        if (errno == EINTR) continue;
        sys_fail("staging " + e.rel);
      }
      off += w;
    }
  }
  // Written to while it was read: what was copied may be a mix.
  if (::fstat(in.fd, &st) != 0) sys_fail(e.abs);
  if (total != static_cast<std::uint64_t>(e.st.st_size)) changed(e, "changed");
  check_same(e, st);
  if (::fchmod(out.fd, e.st.st_mode & 07777) != 0) sys_fail("staging " + e.rel);
  return h.finish_hex();
}

}  // namespace

CopiedTree copy_listing(const TreeListing& listing, const std::filesystem::path& dst) {
  CopiedTree copied;
  if (listing.entries.empty()) return copied;
  DirStack dirs(listing, dst);
  auto groups = hard_link_groups(listing);
  for (std::size_t i = 1; i < listing.entries.size(); ++i) {
    const TreeEntry& e = listing.entries[i];
    auto [src_dir, dst_dir] = dirs.at(parent_of(e.rel));
    std::string name = name_of(e.rel);
    if (S_ISDIR(e.st.st_mode)) {
      if (::mkdirat(dst_dir, name.c_str(), 0700) != 0) sys_fail("staging " + e.rel);
    } else if (S_ISLNK(e.st.st_mode)) {
      if (::symlinkat(e.link_target.c_str(), dst_dir, name.c_str()) != 0) sys_fail("staging " + e.rel);
    } else if (groups[i] >= 0 && static_cast<std::size_t>(groups[i]) != i) {
      const TreeEntry& first = listing.entries[static_cast<std::size_t>(groups[i])];
      if (::linkat(AT_FDCWD, (dst / first.rel).c_str(), dst_dir, name.c_str(), 0) != 0) sys_fail("staging " + e.rel);
      copied.content_hashes[e.rel] = copied.content_hashes.at(first.rel);
    } else {
      copied.content_hashes[e.rel] = copy_file(e, src_dir, dst_dir, name);
    }
  }
  return copied;
}

void apply_directory_modes(const TreeListing& listing, const std::filesystem::path& dst) {
  // Deepest first: a read-only directory must still take its entries' modes.
  for (std::size_t i = listing.entries.size(); i-- > 0;) {
    const TreeEntry& e = listing.entries[i];
    if (!S_ISDIR(e.st.st_mode)) continue;
    auto target = e.rel.empty() ? dst : dst / e.rel;
    if (::chmod(target.c_str(), e.st.st_mode & 07777) != 0) sys_fail("staging " + e.rel);
  }
}

}  // namespace sprout
