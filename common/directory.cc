#include "directory.h"

#include <sys/stat.h>

#include <cerrno>

namespace sprout {

void ensure_directory(const std::string& dir, std::error_code& ec) {
  ec.clear();
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) ec = std::make_error_code(std::errc::not_a_directory);
    return;
  }
  // Each missing ancestor, outermost first.
  for (std::size_t end = dir.find('/', 1);; end = dir.find('/', end + 1)) {
    std::string prefix = dir.substr(0, end);
    if (!prefix.empty() && prefix.back() != '/' && ::mkdir(prefix.c_str(), 0777) != 0 && errno != EEXIST) {
      ec = std::error_code(errno, std::generic_category());
      return;
    }
    if (end == std::string::npos) break;
  }
  if (::stat(dir.c_str(), &st) != 0) ec = std::error_code(errno, std::generic_category());
  else if (!S_ISDIR(st.st_mode)) ec = std::make_error_code(std::errc::not_a_directory);
}

}  // namespace sprout
