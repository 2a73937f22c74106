#include "atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <system_error>

#include <fmt/format.h>

namespace sprout {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const std::string& what, const fs::path& p) {
  throw std::system_error(errno, std::generic_category(), fmt::format("{} {}", what, p.string()));
}

std::string temp_name_for(const fs::path& target) {
  static thread_local unsigned counter = 0;
  return fmt::format(".{}.tmp-{}-{}", target.filename().string(), getpid(), ++counter);
}

void fsync_path(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open", p);
  if (::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    fail("cannot fsync", p);
  }
  ::close(fd);
}

}  // namespace

void fsync_directory(const fs::path& dir) { fsync_path(dir.empty() ? fs::path(".") : dir); }

void write_file_atomic(const fs::path& path, std::string_view data, mode_t mode, Durability durability) {
  fs::path dir = path.parent_path();
  fs::path tmp = (dir.empty() ? fs::path(".") : dir) / temp_name_for(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) fail("cannot create", tmp);
  const char* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      errno = err;
      fail("cannot write", tmp);
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (::fchmod(fd, mode) != 0 || (durability == Durability::durable && ::fsync(fd) != 0)) {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    errno = err;
    fail("cannot sync", tmp);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    errno = err;
    fail("cannot rename into place", path);
  }
  if (durability == Durability::durable) fsync_directory(dir);
}

void symlink_atomic(const fs::path& target, const fs::path& link) {
  fs::path dir = link.parent_path();
  fs::path tmp = (dir.empty() ? fs::path(".") : dir) / temp_name_for(link);
  if (::symlink(target.c_str(), tmp.c_str()) != 0) fail("cannot create", tmp);
  if (::rename(tmp.c_str(), link.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    errno = err;
    fail("cannot update", link);
  }
}

PendingFile::PendingFile(fs::path target) : target_(std::move(target)) {
  fs::path dir = target_.parent_path();
  temp_ = (dir.empty() ? fs::path(".") : dir) / temp_name_for(target_);
}

PendingFile::~PendingFile() {
  if (!committed_) {
    std::error_code ec;
    fs::remove(temp_, ec);
  }
}

void PendingFile::commit_as(const fs::path& target) {
  target_ = target;
  commit();
}

void PendingFile::commit() {
  fsync_path(temp_);
  if (::rename(temp_.c_str(), target_.c_str()) != 0) fail("cannot rename into place", target_);
  committed_ = true;
  fsync_directory(target_.parent_path());
}

}  // namespace sprout
