#include "base/file_digest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <fstream>
#include <limits>
#include <sstream>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "base/sha256.h"

namespace sprout {

namespace {

std::string identity_of(const struct stat& st) {
  return fmt::format("{}:{}:{}:{}.{:09}:{}.{:09}", st.st_dev, st.st_ino, st.st_size, st.st_mtim.tv_sec,
                     st.st_mtim.tv_nsec, st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

}  // namespace

std::string file_sha256(const std::filesystem::path& file, const std::filesystem::path& memo_dir) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), fmt::format("opening {}", file.string()));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::system_error(e, std::generic_category(), fmt::format("reading {}", file.string()));
  }
  std::error_code ec;
  const auto abs = std::filesystem::absolute(file, ec);
  const auto memo = memo_dir / sha256_hex(abs.string()).substr(0, 32);
  const std::string identity = identity_of(st);
  {
    std::ifstream in(memo);
    std::string id, digest;
    if (in >> id >> digest && id == identity && digest.size() == 64) {
      ::close(fd);
      return digest;
    }
  }
  Sha256 h;
  try {
    read_hashing(fd, h, std::numeric_limits<std::uint64_t>::max(), file.string());
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  std::string digest = h.finish_hex();
  struct stat after;
  const bool settled = ::stat(file.c_str(), &after) == 0 && identity_of(after) == identity &&
                       std::time(nullptr) - std::max(st.st_mtim.tv_sec, st.st_ctim.tv_sec) >= 2;
  if (settled) {
    try {
      std::filesystem::create_directories(memo_dir);
      write_file_atomic(memo, identity + " " + digest + "\n", 0644, Durability::cache);
    } catch (const std::exception& e) {
      spdlog::debug("{}: its digest is not remembered: {}", file.string(), e.what());
    }
  }
  return digest;
}

}  // namespace sprout
