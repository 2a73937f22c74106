#include "spec/state_dir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "base/traversable_dirs.h"

namespace sprout {

void StateDir::make_private(bool traversable) const {
  namespace fs = std::filesystem;
  const mode_t want = traversable ? 0711 : 0700;
  if (!root.parent_path().empty()) {
    if (traversable) make_traversable_dirs(root.parent_path());  // (whatever the umask)
    else fs::create_directories(root.parent_path());
  }
  if (::mkdir(root.c_str(), want) == 0)
    ::chmod(root.c_str(), want);  // the umask took bits from mkdir's mode (077, as the units run: 0700)
  else if (errno != EEXIST)
    throw std::system_error(errno, std::generic_category(), "cannot create the state directory " + root.string());
  struct stat st {};
  if (::lstat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw std::system_error(ENOTDIR, std::generic_category(), "the state directory " + root.string());
  if (st.st_uid != ::geteuid()) return;  // not ours to change (a user's own directory, read by root)
  if ((st.st_mode & 07777 & ~want) != 0) ::chmod(root.c_str(), st.st_mode & 07777 & want);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    struct stat f {};
    if (::lstat(e.path().c_str(), &f) != 0 || !S_ISREG(f.st_mode) || f.st_uid != ::geteuid()) continue;
    if (f.st_mode & 077) ::chmod(e.path().c_str(), f.st_mode & 07700);
  }
}

std::vector<std::filesystem::path> StateDir::overlays() const {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    if (n == overlay().filename() || is_overlay_aside(n)) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace sprout
