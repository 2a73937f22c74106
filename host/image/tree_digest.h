// Tree digests: SHA-256 over a canonical walk of a directory (sorted names, file
// type, mode bits, uid/gid, size, the SHA-256 of each file's content, symlink
// targets, which files of the tree are hard links of one another: an image keeps
// them as one inode). The same tree gives the same digest on any machine; any change that
// would change the exported disk changes it. Timestamps are not part of it
// (exported images have fixed times). File contents are hashed as they are read
// through the checked reader (listed_tree.h); a ContentHashCache may supply the hashes
// of files known to be unchanged.
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "image/tree.h"

namespace sprout {

/// Remembers content hashes of files by path and stat identity (size, mtime, ctime,
/// inode), so an unchanged tree is not read again. Implementations must be
/// thread-safe for concurrent lookup/store.
class ContentHashCache {
 public:
  virtual ~ContentHashCache() = default;
  virtual std::optional<std::string> lookup(const std::string& rel, const struct stat& st) = 0;
  virtual void store(const std::string& rel, const struct stat& st, const std::string& hash) = 0;
};

/// For each entry, the index of the first entry of the listing that is the same
/// regular file (same device and inode), or -1 when no other entry is.
std::vector<long> hard_link_groups(const TreeListing& listing);

/// Hex SHA-256 of everything but file contents: names, types, modes, owners, sizes,
/// symlink targets. Cheap; the same tree always gives the same value.
std::string structure_digest(const TreeListing& listing);

/// The tree digest of a listing whose files' hashes are all known to `cache`, or
/// nothing (and nothing read) when one is not.
std::optional<std::string> known_content_digest(const TreeListing& listing, ContentHashCache& cache);

/// The tree digest of a listing given each entry's content hash (by index; only
/// regular files' are used).
std::string digest_of(const TreeListing& listing, const std::vector<std::string>& hashes);

/// Hex SHA-256 of a generation: the roles' digests plus the rebuild settings and, for
/// a host-built VM, the closure disk's key (which names its system), and the keyed
/// digest of the VM's secrets when it has some, in a fixed order. Stable across hosts;
/// a VM without closure or secrets has the id it had before either existed.
std::string generation_id(const std::string& config_digest, const std::string& self_digest,
                          const std::string& ssh_digest, const std::string& rebuild_json,
                          const std::string& closure_digest = "", const std::string& secrets_digest = "");

}  // namespace sprout
