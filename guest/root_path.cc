#include "root_path.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "whole_file.h"

namespace sprout::agent {

std::string under_root(const std::string& root, const std::string& guest_path) {
  if (root.empty() || root == "/") return guest_path;
  std::size_t skip = guest_path.find_first_not_of('/');
  if (skip == std::string::npos) skip = guest_path.size();
  std::string out = root;
  if (out.back() != '/') out += '/';
  out.append(guest_path, skip, std::string::npos);
  return out;
}

namespace {
std::vector<std::string> split(const std::string& p) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : p) {
    if (c == '/') {
      if (!cur.empty()) parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) parts.push_back(cur);
  return parts;
}
}  // namespace

std::string resolve_in_root(const std::string& root, const std::string& guest_path) {
  // Work list of components still to walk; `done` is the resolved prefix.
  std::vector<std::string> todo = split(guest_path);
  std::vector<std::string> done;
  int hops = 0;
  std::size_t i = 0;
  while (i < todo.size()) {
    const std::string part = todo[i++];
    if (part == ".") continue;
    if (part == "..") {
      if (!done.empty()) done.pop_back();
      continue;
    }
    std::string cur;
    for (const auto& d : done) cur += "/" + d;
    cur += "/" + part;
    std::string host = under_root(root, cur);
    struct stat st;
    if (::lstat(host.c_str(), &st) != 0) return {};
    if (S_ISLNK(st.st_mode)) {
      if (++hops > 40) return {};
      char buf[4096];
      ssize_t n = ::readlink(host.c_str(), buf, sizeof buf - 1);
      if (n <= 0) return {};
      std::string target(buf, static_cast<std::size_t>(n));
      std::vector<std::string> rest(todo.begin() + static_cast<long>(i), todo.end());
      todo = split(target);
      todo.insert(todo.end(), rest.begin(), rest.end());
      i = 0;
      if (!target.empty() && target.front() == '/') done.clear();
      continue;
    }
    done.push_back(part);
  }
  std::string out;
  for (const auto& d : done) out += "/" + d;
  return out.empty() ? "/" : out;
}

std::string parent_dir(const std::string& path) {
  std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  std::size_t end = path.find_last_not_of('/', slash);
  return end == std::string::npos ? "/" : path.substr(0, end + 1);
}

std::string read_small_file(const std::string& path, std::size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string s(max_bytes, '\0');
  std::size_t got = 0;
  while (got < max_bytes) {
    ssize_t n = ::read(fd, s.data() + got, max_bytes - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  s.resize(got);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t' || s.back() == '\0' ||
                        s.back() == '\r'))
    s.pop_back();
  return s;
}

std::string read_exact_file(const std::string& path, std::size_t max_bytes) {
  WholeFile f = read_whole_file(path, max_bytes);
  if (!f) throw std::runtime_error(fmt::format("cannot read {}: {}", path, f.why(max_bytes)));
  return std::move(f.text);
}

}  // namespace sprout::agent
