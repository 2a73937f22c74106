#include "image/tree_digest.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <exception>
#include <map>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "error.h"
#include "base/sha256.h"

namespace sprout {

std::string file_content_hash(const std::filesystem::path& path, std::uint64_t expected_size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == EACCES)
      throw InputError(fmt::format("{}: file is not readable (fix its permissions)", path.string()));
    throw std::system_error(errno, std::generic_category(), path.string());
  }
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  Sha256 h;
  std::uint64_t total = 0;
  try {
    total = read_hashing(fd, h, expected_size, path.string());
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  // The tree changed under sprout: the same answer as a change found after the build
  // (export.cc), an input problem with exit status 2; nothing is cached.
  if (total != expected_size)
    throw InputError(fmt::format("{}: changed while it was read; nothing was cached, run the export again",
                                 path.string()));
  return h.finish_hex();
}

namespace {
char type_of(const TreeEntry& e) { return S_ISDIR(e.st.st_mode) ? 'd' : S_ISLNK(e.st.st_mode) ? 'l' : 'f'; }

/// One entry's record; `buf` is scratch space reused across entries. `link_group`:
/// the index of the first entry that is the same file (hard link), or -1.
void hash_header(Sha256& h, const TreeEntry& e, long link_group, fmt::memory_buffer& buf) {
  char type = type_of(e);
  buf.clear();
  // Length-prefixed name so no name can imitate a record boundary.
  fmt::format_to(std::back_inserter(buf), "{} {} {} {:o} {} {} {}\n", type, e.rel.size(), e.rel,
                 e.st.st_mode & 07777, e.st.st_uid, e.st.st_gid, type == 'f' ? e.st.st_size : 0);
  if (type == 'l') fmt::format_to(std::back_inserter(buf), "{} {}\n", e.link_target.size(), e.link_target);
  if (link_group >= 0) fmt::format_to(std::back_inserter(buf), "= {}\n", link_group);
  h.update(buf.data(), buf.size());
}
}  // namespace

std::vector<long> hard_link_groups(const TreeListing& listing) {
  std::vector<long> group(listing.entries.size(), -1);
  std::map<std::pair<dev_t, ino_t>, std::size_t> first;
  for (std::size_t i = 0; i < listing.entries.size(); ++i) {
    const auto& st = listing.entries[i].st;
    if (!S_ISREG(st.st_mode) || st.st_nlink < 2) continue;
    auto [it, inserted] = first.emplace(std::pair{st.st_dev, st.st_ino}, i);
    if (!inserted) group[it->second] = group[i] = static_cast<long>(it->second);
  }
  return group;
}

std::string structure_digest(const TreeListing& listing) {
  Sha256 h;
  h.update("sprout-structure-v2\n");
  fmt::memory_buffer buf;
  auto groups = hard_link_groups(listing);
  for (std::size_t i = 0; i < listing.entries.size(); ++i) hash_header(h, listing.entries[i], groups[i], buf);
  return h.finish_hex();
}

std::string content_digest(const TreeListing& listing, ContentHashCache* cache) {
  const auto& entries = listing.entries;
  // Hash file contents, in parallel, unless the cache knows them.
  std::vector<std::string> hashes(entries.size());
  std::vector<std::size_t> todo;
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    if (!S_ISREG(e.st.st_mode)) continue;
    if (cache) {
      if (auto h = cache->lookup(e.rel, e.st)) {
        hashes[i] = *h;
        continue;
      }
    }
    todo.push_back(i);
  }
  std::atomic<std::size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  auto worker = [&] {
    for (std::size_t k; (k = next.fetch_add(1)) < todo.size();) {
      const auto& e = entries[todo[k]];
      try {
        hashes[todo[k]] = file_content_hash(e.abs, static_cast<std::uint64_t>(e.st.st_size));
        if (cache) cache->store(e.rel, e.st, hashes[todo[k]]);
      } catch (...) {
        std::lock_guard lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        next = todo.size();
      }
    }
  };
  std::size_t threads = std::min<std::size_t>({std::max(1u, std::thread::hardware_concurrency()), 8,
                                               todo.size() / 16 + 1});
  std::vector<std::thread> pool;
  for (std::size_t t = 1; t < threads; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  if (failure) std::rethrow_exception(failure);
  return digest_of(listing, hashes);
}

std::optional<std::string> known_content_digest(const TreeListing& listing, ContentHashCache& cache) {
  std::vector<std::string> hashes(listing.entries.size());
  for (std::size_t i = 0; i < listing.entries.size(); ++i) {
    const auto& e = listing.entries[i];
    if (!S_ISREG(e.st.st_mode)) continue;
    auto h = cache.lookup(e.rel, e.st);
    if (!h) return std::nullopt;
    hashes[i] = std::move(*h);
  }
  return digest_of(listing, hashes);
}

std::string digest_of(const TreeListing& listing, const std::vector<std::string>& hashes) {
  const auto& entries = listing.entries;
  Sha256 h;
  h.update("sprout-tree-v3\n");
  fmt::memory_buffer buf;
  auto groups = hard_link_groups(listing);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    hash_header(h, entries[i], groups[i], buf);
    if (type_of(entries[i]) == 'f') {
      h.update(hashes[i].data(), hashes[i].size());
      h.update("\n");
    }
  }
  return h.finish_hex();
}

std::string tree_digest(const std::filesystem::path& root, const TreeFilter& filter,
                        const std::function<void(const TreeEntry&)>& also_visit, ContentHashCache* cache) {
  TreeListing l = list_tree(root, filter);
  if (also_visit)
    for (const auto& e : l.entries) also_visit(e);
  return content_digest(l, cache);
}

std::string generation_id(const std::string& config_digest, const std::string& self_digest,
                          const std::string& ssh_digest, const std::string& rebuild_json,
                          const std::string& closure_digest) {
  return sha256_hex(fmt::format("sprout-generation-v1\nconfig {}\nself {}\nssh {}\nrebuild {}\n{}", config_digest,
                                self_digest, ssh_digest.empty() ? "-" : ssh_digest, rebuild_json,
                                closure_digest.empty() ? "" : fmt::format("closure {}\n", closure_digest)));
}

}  // namespace sprout
