#include "tree.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "error.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

const char* kind_of(mode_t m) {
  if (S_ISFIFO(m)) return "a fifo";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  return "an unsupported file type";
}

void walk_dir(const TreeEntry& dir, const std::function<void(const TreeEntry&)>& visit,
              const TreeFilter& filter) {
  DIR* d = opendir(dir.abs.c_str());
  if (!d) {
    if (errno == EACCES)
      throw InputError(fmt::format("{}: directory is not readable (fix its permissions)", dir.abs.string()));
    throw std::system_error(errno, std::generic_category(), dir.abs.string());
  }
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    std::string_view n(e->d_name);
    if (n == "." || n == "..") continue;
    names.emplace_back(n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    TreeEntry e;
    e.rel = dir.rel.empty() ? name : dir.rel + "/" + name;
    e.abs = dir.abs / name;
    if (lstat(e.abs.c_str(), &e.st) != 0) throw std::system_error(errno, std::generic_category(), e.abs.string());
    if (S_ISLNK(e.st.st_mode)) {
      std::error_code ec;
      e.link_target = fs::read_symlink(e.abs, ec).string();
      if (ec) throw std::system_error(ec, e.abs.string());
    } else if (!S_ISREG(e.st.st_mode) && !S_ISDIR(e.st.st_mode)) {
      throw InputError(fmt::format("{}: is {}; only regular files, directories and symlinks can be exported "
                                   "(remove it or move it out of the tree)",
                                   e.abs.string(), kind_of(e.st.st_mode)));
    }
    if (filter && !filter(e)) continue;
    visit(e);
    if (S_ISDIR(e.st.st_mode)) walk_dir(e, visit, filter);
  }
}

}  // namespace

void walk_tree(const fs::path& root, const std::function<void(const TreeEntry&)>& visit, const TreeFilter& filter) {
  TreeEntry r;
  r.abs = root;
  if (lstat(root.c_str(), &r.st) != 0) {
    if (errno == ENOENT) throw InputError(fmt::format("{}: directory does not exist", root.string()));
    throw std::system_error(errno, std::generic_category(), root.string());
  }
  if (S_ISLNK(r.st.st_mode)) {
    // A source given as a symlink to a directory is followed once, at the top.
    if (stat(root.c_str(), &r.st) != 0) throw InputError(fmt::format("{}: dangling symlink", root.string()));
  }
  if (!S_ISDIR(r.st.st_mode)) throw InputError(fmt::format("{}: is not a directory", root.string()));
  visit(r);
  walk_dir(r, visit, filter);
}

}  // namespace sprout
