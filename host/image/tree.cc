#include "image/tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
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

/// The entries of directory `dir`, sorted by name, each stat'ed relative to the open
/// directory (no path lookup from the root); the directory is closed on return.
std::vector<TreeEntry> read_dir(const TreeEntry& dir) {
  DIR* d = opendir(dir.abs.c_str());
  if (!d) {
    if (errno == EACCES)
      throw InputError(fmt::format("{}: directory is not readable (fix its permissions)", dir.abs));
    throw std::system_error(errno, std::generic_category(), dir.abs);
  }
  std::unique_ptr<DIR, int (*)(DIR*)> closer(d, closedir);
  const int dfd = dirfd(d);
  std::vector<std::string> names;
  errno = 0;
  while (dirent* e = readdir(d)) {
    std::string_view n(e->d_name);
    if (n != "." && n != "..") names.emplace_back(n);
  }
  if (errno != 0) throw std::system_error(errno, std::generic_category(), "reading directory " + dir.abs);
  std::sort(names.begin(), names.end());

  std::vector<TreeEntry> children(names.size());
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string& name = names[i];
    TreeEntry& e = children[i];
    e.rel.reserve(dir.rel.size() + 1 + name.size());
    if (!dir.rel.empty()) e.rel.append(dir.rel).push_back('/');
    e.rel.append(name);
    e.abs.reserve(dir.abs.size() + 1 + name.size());
    e.abs.append(dir.abs).append(dir.abs.ends_with('/') ? "" : "/").append(name);
    if (fstatat(dfd, name.c_str(), &e.st, AT_SYMLINK_NOFOLLOW) != 0)
      throw std::system_error(errno, std::generic_category(), e.abs);
    if (S_ISLNK(e.st.st_mode)) {
      char buf[PATH_MAX + 1];
      ssize_t n = readlinkat(dfd, name.c_str(), buf, sizeof buf);
      if (n < 0) throw std::system_error(errno, std::generic_category(), e.abs);
      if (static_cast<std::size_t>(n) >= sizeof buf)
        throw InputError(fmt::format("{}: symlink target longer than {} bytes", e.abs, PATH_MAX));
      e.link_target.assign(buf, static_cast<std::size_t>(n));
    } else if (!S_ISREG(e.st.st_mode) && !S_ISDIR(e.st.st_mode)) {
      throw InputError(fmt::format("{}: is {}; only regular files, directories and symlinks can be exported "
                                   "(remove it or move it out of the tree)",
                                   e.abs, kind_of(e.st.st_mode)));
    }
  }
  return children;
}

/// Appends the entries under out[index] (a directory) to `out`, in canonical order.
void list_dir(std::vector<TreeEntry>& out, std::size_t index, const TreeFilter& filter) {
  for (auto& e : read_dir(out[index])) {
    if (filter && !filter(e)) continue;
    out.push_back(std::move(e));
    if (S_ISDIR(out.back().st.st_mode)) list_dir(out, out.size() - 1, filter);
  }
}

/// Below this many entries (when the caller knows), one thread lists faster.
constexpr std::size_t kSmallTree = 1000;

/// Lists everything under `root` (no filter) with `threads` threads reading and
/// stat'ing directories at once: each stat is a system call, and on a virtual machine
/// each costs microseconds, so 10,000 of them take tens of milliseconds on one core.
/// The result is exactly what list_dir gives; the first failure in canonical order is
/// the one thrown, as list_dir would.
void list_dir_parallel(std::vector<TreeEntry>& out, unsigned threads) {
  struct Job {
    TreeEntry dir;
    std::vector<TreeEntry> children;
    std::vector<std::size_t> subjobs;  ///< the job of each child directory, in order
    std::exception_ptr error;
  };
  std::deque<Job> jobs;  // grows while workers hold references: a deque keeps them valid
  std::mutex mutex;
  std::condition_variable cv;
  std::size_t next = 0, done = 0;
  jobs.push_back({out[0], {}, {}, {}});

  auto worker = [&] {
    std::unique_lock lock(mutex);
    for (;;) {
      cv.wait(lock, [&] { return next < jobs.size() || done == jobs.size(); });
      if (next == jobs.size()) return;  // all done
      Job& job = jobs[next++];
      lock.unlock();
      try {
        job.children = read_dir(job.dir);
      } catch (...) {
        job.error = std::current_exception();
      }
      lock.lock();
      for (const auto& c : job.children) {
        if (!S_ISDIR(c.st.st_mode)) continue;
        job.subjobs.push_back(jobs.size());
        jobs.push_back({c, {}, {}, {}});
      }
      ++done;
      cv.notify_all();
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();

  auto emit = [&](auto& self, std::size_t j) -> void {
    Job& job = jobs[j];
    if (job.error) std::rethrow_exception(job.error);
    std::size_t k = 0;
    for (auto& c : job.children) {
      bool is_dir = S_ISDIR(c.st.st_mode);
      out.push_back(std::move(c));
      if (is_dir) self(self, job.subjobs[k++]);
    }
    std::vector<TreeEntry>().swap(job.children);
  };
  emit(emit, 0);
}

/// The root entry: `root` lstat'ed, or stat'ed when it is a symlink (followed once, at
/// the top); an InputError unless it is a directory.
TreeEntry root_entry(const fs::path& root) {
  TreeEntry r;
  r.abs = root.string();
  if (lstat(root.c_str(), &r.st) != 0) {
    if (errno == ENOENT) throw InputError(fmt::format("{}: directory does not exist", root.string()));
    throw std::system_error(errno, std::generic_category(), root.string());
  }
  if (S_ISLNK(r.st.st_mode)) {
    if (stat(root.c_str(), &r.st) != 0) throw InputError(fmt::format("{}: dangling symlink", root.string()));
  }
  if (!S_ISDIR(r.st.st_mode)) throw InputError(fmt::format("{}: is not a directory", root.string()));
  return r;
}

}  // namespace

TreeListing list_tree(const fs::path& root, const TreeFilter& filter, std::size_t expected_entries) {
  TreeListing l;
  l.entries.reserve(expected_entries + 1);
  l.entries.push_back(root_entry(root));
  // A filter may keep state (the ssh filter does) and must see entries in order.
  unsigned threads = std::min(std::max(1u, std::thread::hardware_concurrency()), 4u);
  // A tree known to be small is listed before threads would have started.
  if (expected_entries > 0 && expected_entries < kSmallTree) threads = 1;
  if (filter || threads == 1)
    list_dir(l.entries, 0, filter);
  else
    list_dir_parallel(l.entries, threads);
  return l;
}

void walk_tree(const fs::path& root, const std::function<void(const TreeEntry&)>& visit, const TreeFilter& filter) {
  for (const auto& e : list_tree(root, filter).entries) visit(e);
}

}  // namespace sprout
