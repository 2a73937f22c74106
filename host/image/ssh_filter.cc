#include "image/ssh_filter.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>

#include <fmt/format.h>

#include "error.h"

namespace sprout {

namespace {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
bool starts_with(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

std::string_view base_name(std::string_view rel) {
  auto slash = rel.rfind('/');
  return slash == std::string_view::npos ? rel : rel.substr(slash + 1);
}

bool public_by_name(std::string_view name) {
  return starts_with(name, "authorized_keys") || starts_with(name, "known_hosts") || ends_with(name, ".pub") ||
         name == "config";
}

bool private_by_name(std::string_view name) {
  if (ends_with(name, ".pub")) return false;
  return starts_with(name, "id_") || ends_with(name, ".pem") || ends_with(name, ".key") ||
         ends_with(name, ".ppk") || starts_with(name, "ssh_host_") || name == "identity";
}

}  // namespace

bool looks_like_private_key(const std::string& path, const struct stat* listed) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return false;  // the export's reading of it then fails, naming it
  struct stat st;
  if (listed && (::fstat(fd, &st) != 0 || st.st_dev != listed->st_dev || st.st_ino != listed->st_ino)) {
    // Not the file that was listed (a directory on its path was swapped): what the
    // export will read is another file than the one looked at here.
    ::close(fd);
    throw InputError(fmt::format("{}: was replaced since it was listed; nothing was exported from the changed "
                                 "tree, run the export again",
                                 path));
  }
  std::array<char, 64 * 1024> buf{};
  ssize_t n = ::read(fd, buf.data(), buf.size());
  ::close(fd);
  if (n <= 0) return false;
  std::string_view head(buf.data(), static_cast<std::size_t>(n));
  return head.find("PRIVATE KEY-----") != std::string_view::npos ||
         head.find("PuTTY-User-Key-File") != std::string_view::npos ||
         head.find("BEGIN SSH2 ENCRYPTED PRIVATE KEY") != std::string_view::npos;
}

bool SshFilter::operator()(const TreeEntry& e) {
  if (allow_private_) return true;
  if (S_ISDIR(e.st.st_mode)) return true;
  auto name = base_name(e.rel);
  if (S_ISLNK(e.st.st_mode)) {
    // A symlink carries no key material itself; keep it only with a public name.
    if (public_by_name(name) && !private_by_name(name)) return true;
    excluded_.push_back({e.rel, "symlink with a name that is not known public ssh material"});
    return false;
  }
  if (looks_like_private_key(e.abs, &e.st)) {
    excluded_.push_back({e.rel, "private key (found by its content)"});
    return false;
  }
  if (private_by_name(name)) {
    excluded_.push_back({e.rel, "private key (found by its name)"});
    return false;
  }
  if (!public_by_name(name)) {
    excluded_.push_back({e.rel, "not known public ssh material (authorized_keys, *.pub, known_hosts, config)"});
    return false;
  }
  return true;
}

}  // namespace sprout
