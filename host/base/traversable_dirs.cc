#include "base/traversable_dirs.h"

#include <sys/stat.h>

#include <cerrno>
#include <system_error>
#include <vector>

namespace sprout {

void make_traversable_dirs(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> missing;  // innermost first
  struct stat st {};
  for (std::filesystem::path at = dir; !at.empty() && ::stat(at.c_str(), &st) != 0; at = at.parent_path()) {
    if (errno != ENOENT) throw std::system_error(errno, std::generic_category(), "cannot reach " + at.string());
    missing.push_back(at);
    if (at == at.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0711) != 0) {
      if (errno == EEXIST && ::stat(it->c_str(), &st) == 0 && S_ISDIR(st.st_mode)) continue;  // made meanwhile
      throw std::system_error(errno, std::generic_category(), "cannot create the directory " + it->string());
    }
    ::chmod(it->c_str(), 0711);  // the umask took bits from mkdir's mode
  }
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw std::system_error(std::make_error_code(std::errc::not_a_directory), dir.string());
}

}  // namespace sprout
