#include "whole_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace sprout {

std::string WholeFile::why(std::size_t max_bytes) const {
  return too_large ? fmt::format("larger than {} bytes", max_bytes) : std::strerror(error);
}

WholeFile read_whole_file(const std::string& path, std::size_t max_bytes) {
  WholeFile f;
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    f.error = errno;
    return f;
  }
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) f.error = errno;
    if (n <= 0) break;
    f.text.append(buf, static_cast<std::size_t>(n));
    if (f.text.size() > max_bytes) {
      f.too_large = true;
      break;
    }
  }
  ::close(fd);
  return f;
}

}  // namespace sprout
