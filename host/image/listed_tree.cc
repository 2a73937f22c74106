#include "image/listed_tree.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include <fmt/format.h>

#include "error.h"
#include "base/sha256.h"
#include "image/tree_digest.h"

namespace sprout {

namespace {

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

bool is_prefix(const std::string& dir, const std::string& rel) {
  return dir.empty() || rel == dir ||
         (rel.size() > dir.size() && rel.compare(0, dir.size(), dir) == 0 && rel[dir.size()] == '/');
}

}  // namespace

std::string parent_of(const std::string& rel) {
  auto slash = rel.rfind('/');
  return slash == std::string::npos ? std::string() : rel.substr(0, slash);
}

std::string name_of(const std::string& rel) {
  auto slash = rel.rfind('/');
  return slash == std::string::npos ? rel : rel.substr(slash + 1);
}

struct ListedTreeReader::Level {
  std::string rel;
  int fd = -1;
};

ListedTreeReader::ListedTreeReader(const TreeListing& listing) : listing_(listing) {
  const TreeEntry& root = listing.entries.at(0);
  int fd = ::open(root.abs.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) changed(root, "was replaced");
    sys_fail(root.abs);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    sys_fail(root.abs);
  }
  if (st.st_dev != root.st.st_dev || st.st_ino != root.st.st_ino) {
    ::close(fd);
    changed(root, "was replaced");
  }
  stack_.push_back({"", fd});
  for (std::size_t i = 1; i < listing.entries.size(); ++i)
    if (S_ISDIR(listing.entries[i].st.st_mode)) dirs_.emplace(listing.entries[i].rel, i);
}

ListedTreeReader::~ListedTreeReader() {
  for (auto& l : stack_) ::close(l.fd);
}

int ListedTreeReader::directory(const std::string& rel) {
  while (!is_prefix(stack_.back().rel, rel)) {
    ::close(stack_.back().fd);
    stack_.pop_back();
  }
  while (stack_.back().rel != rel) {
    const std::string& top = stack_.back().rel;
    auto slash = rel.find('/', top.empty() ? 0 : top.size() + 1);
    std::string next = rel.substr(0, slash);
    const TreeEntry& e = listing_.entries.at(dirs_.at(next));
    int fd = ::openat(stack_.back().fd, name_of(next).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ELOOP || errno == ENOTDIR || errno == ENOENT) changed(e, "was replaced");
      sys_fail(e.abs);
    }
    stack_.push_back({next, fd});
    struct stat st;
    if (::fstat(fd, &st) != 0) sys_fail(e.abs);
    check_same(e, st);
  }
  return stack_.back().fd;
}

std::string ListedTreeReader::read_file(std::size_t i, const std::function<void(const char*, std::size_t)>& sink) {
  const TreeEntry& e = listing_.entries.at(i);
  int dir = directory(parent_of(e.rel));
  int fd = ::openat(dir, name_of(e.rel).c_str(), O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP || errno == ENOENT) changed(e, "was replaced");
    if (errno == EACCES) throw InputError(fmt::format("{}: file is not readable (fix its permissions)", e.abs));
    sys_fail(e.abs);
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) sys_fail(e.abs);
  check_same(e, st);
  // Never more than was listed: no sink is handed more bytes than the size it was told.
  Sha256 h;
  std::uint64_t total = read_hashing(fd, h, static_cast<std::uint64_t>(e.st.st_size), e.abs, sink);
  // Written to while it was read: what was read may be a mix.
  if (::fstat(fd, &st) != 0) sys_fail(e.abs);
  if (total != static_cast<std::uint64_t>(e.st.st_size)) changed(e, "changed");
  check_same(e, st);
  return h.finish_hex();
}

std::string ListedTreeReader::content_digest(ContentHashCache* known) {
  const auto& entries = listing_.entries;
  auto groups = hard_link_groups(listing_);
  std::vector<std::string> hashes(entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    if (!S_ISREG(entries[i].st.st_mode)) continue;
    bool again = groups[i] >= 0 && static_cast<std::size_t>(groups[i]) != i;
    if (again) {
      hashes[i] = hashes[static_cast<std::size_t>(groups[i])];
      continue;
    }
    auto cached = known ? known->lookup(entries[i].rel, entries[i].st) : std::nullopt;
    hashes[i] = cached ? *cached : read_file(i, {});
  }
  return digest_of(listing_, hashes);
}

}  // namespace sprout
