// Tree digests: SHA-256 over a canonical walk of a directory (sorted names, file
// type, mode bits, uid/gid, size, content, symlink targets). The same tree gives the
// same digest on any machine; any change that would change the exported disk
// changes it. Timestamps are not part of it (exported images have fixed times).
#pragma once

#include <filesystem>
#include <string>

#include "tree.h"

namespace sprout {

/// Hex SHA-256 of the tree at `root`, restricted to entries `filter` accepts.
std::string tree_digest(const std::filesystem::path& root, const TreeFilter& filter = {});

/// Hex SHA-256 of a generation: the roles' digests plus the rebuild settings, in a
/// fixed order. Stable across hosts.
std::string generation_id(const std::string& config_digest, const std::string& self_digest,
                          const std::string& ssh_digest, const std::string& rebuild_json);

}  // namespace sprout
