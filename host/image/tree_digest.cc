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

std::string generation_id(const std::string& config_digest, const std::string& self_digest,
                          const std::string& ssh_digest, const std::string& rebuild_json,
                          const std::string& closure_digest, const std::string& secrets_digest) {
  return sha256_hex(fmt::format("sprout-generation-v1\nconfig {}\nself {}\nssh {}\nrebuild {}\n{}{}", config_digest,
                                self_digest, ssh_digest.empty() ? "-" : ssh_digest, rebuild_json,
                                closure_digest.empty() ? "" : fmt::format("closure {}\n", closure_digest),
                                secrets_digest.empty() ? "" : fmt::format("secrets {}\n", secrets_digest)));
}

}  // namespace sprout
