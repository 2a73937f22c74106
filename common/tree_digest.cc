#include "tree_digest.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "sha256.h"

namespace sprout {

namespace {

void hash_file(Sha256& h, const TreeEntry& e) {
  int fd = ::open(e.abs.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), e.abs.string());
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::vector<char> buf(1 << 20);
  std::uint64_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      throw std::system_error(err, std::generic_category(), e.abs.string());
    }
    if (n == 0) break;
    h.update(buf.data(), static_cast<std::size_t>(n));
    total += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  if (total != static_cast<std::uint64_t>(e.st.st_size))
    throw std::runtime_error(fmt::format("{}: file changed while it was read", e.abs.string()));
}

}  // namespace

std::string tree_digest(const std::filesystem::path& root, const TreeFilter& filter) {
  Sha256 h;
  h.update("sprout-tree-v1\n");
  walk_tree(
      root,
      [&](const TreeEntry& e) {
        char type = S_ISDIR(e.st.st_mode) ? 'd' : S_ISLNK(e.st.st_mode) ? 'l' : 'f';
        // Length-prefixed name so no name can imitate a record boundary.
        auto header = fmt::format("{} {} {} {:o} {} {} {}\n", type, e.rel.size(), e.rel, e.st.st_mode & 07777,
                                  e.st.st_uid, e.st.st_gid, type == 'f' ? e.st.st_size : 0);
        h.update(header);
        if (type == 'l') h.update(fmt::format("{} {}\n", e.link_target.size(), e.link_target));
        if (type == 'f') hash_file(h, e);
      },
      filter);
  return h.finish_hex();
}

std::string generation_id(const std::string& config_digest, const std::string& self_digest,
                          const std::string& ssh_digest, const std::string& rebuild_json) {
  return sha256_hex(fmt::format("sprout-generation-v1\nconfig {}\nself {}\nssh {}\nrebuild {}\n", config_digest,
                                self_digest, ssh_digest.empty() ? "-" : ssh_digest, rebuild_json));
}

}  // namespace sprout
