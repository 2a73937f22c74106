#include "image/memory_image.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include <fmt/format.h>

namespace sprout {

namespace {

constexpr std::size_t kBlock = 4096;

[[noreturn]] void sys_fail(const std::string& what) { throw std::system_error(errno, std::generic_category(), what); }

bool all_zero(const char* p, std::size_t n) {
  static const char zeros[kBlock] = {};
  return std::memcmp(p, zeros, n) == 0;
}

void write_all(int fd, const char* p, std::size_t n, off_t at, const std::filesystem::path& out) {
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, n, at);
    if (w < 0) {
      if (errno == EINTR) continue;
      sys_fail("cannot write " + out.string());
    }
    p += w;
    n -= static_cast<std::size_t>(w);
    at += w;
  }
}

}  // namespace

MemoryImage::MemoryImage() {
  fd_ = ::memfd_create("sprout-image", MFD_CLOEXEC);
  if (fd_ < 0) sys_fail("memfd_create");
  path_ = fmt::format("/proc/{}/fd/{}", ::getpid(), fd_);
}

MemoryImage::~MemoryImage() {
  if (fd_ >= 0) ::close(fd_);
}

std::uint64_t MemoryImage::write_to(const std::filesystem::path& out) const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) sys_fail("fstat of the image in memory");
  const off_t size = st.st_size;
  int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (o < 0) sys_fail("cannot create " + out.string());
  std::uint64_t written = 0;
  void* map = nullptr;
  try {
    // Read through a mapping: no buffer to allocate and fill, and holes are skipped
    // (SEEK_DATA), so their pages are never touched.
    if (size > 0) {
      map = ::mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_SHARED, fd_, 0);
      if (map == MAP_FAILED) {
        map = nullptr;
        sys_fail("mmap of the image in memory");
      }
    }
    const char* bytes = static_cast<const char*>(map);
    off_t pos = 0;
    while (pos < size) {
      off_t data = ::lseek(fd_, pos, SEEK_DATA);
      if (data < 0) {
        if (errno == ENXIO) break;  // only a hole is left
        sys_fail("lseek of the image in memory");
      }
      off_t hole = ::lseek(fd_, data, SEEK_HOLE);
      if (hole < 0) sys_fail("lseek of the image in memory");
      hole = std::min(hole, size);
      // Write each run of blocks that are not all zeros.
      for (off_t i = data; i < hole;) {
        std::size_t len = static_cast<std::size_t>(std::min<off_t>(kBlock, hole - i));
        if (all_zero(bytes + i, len)) {
          i += static_cast<off_t>(len);
          continue;
        }
        off_t end = i + static_cast<off_t>(len);
        while (end < hole) {
          std::size_t next = static_cast<std::size_t>(std::min<off_t>(kBlock, hole - end));
          if (all_zero(bytes + end, next)) break;
          end += static_cast<off_t>(next);
        }
        write_all(o, bytes + i, static_cast<std::size_t>(end - i), i, out);
        written += static_cast<std::uint64_t>(end - i);
        i = end;
      }
      pos = hole;
    }
    if (::ftruncate(o, size) != 0) sys_fail("cannot size " + out.string());
    // Start writing it out now: the fsync that makes it durable then waits less.
    ::sync_file_range(o, 0, 0, SYNC_FILE_RANGE_WRITE);
  } catch (...) {
    if (map) ::munmap(map, static_cast<std::size_t>(size));
    ::close(o);
    throw;
  }
  if (map) ::munmap(map, static_cast<std::size_t>(size));
  if (::close(o) != 0) sys_fail("cannot write " + out.string());
  return written;
}

}  // namespace sprout
