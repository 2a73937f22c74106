// Paths under a root prefix. Every path the agent touches (sysfs, /dev, /run,
// /nix/var/nix/profiles, the state directory, mount points) is a guest path such as
// "/sys/block"; under_root() puts it below the prefix ("/" in production, a temporary
// fake tree in unit tests). resolve_in_root() follows symlinks the way the guest would
// see them: absolute link targets stay inside the prefix.
// Paths are plain strings here, not std::filesystem::path: the agent's fast path runs
// under software emulation, where each code path run for the first time is what
// costs, and parsing paths into components is code the agent does not need.
#pragma once

#include <string>
#include <system_error>

#include "directory.h"  // ensure_directory, shared with the host

namespace sprout::agent {

/// root + guest_path (guest_path absolute). root "/" or "" gives guest_path itself.
std::string under_root(const std::string& root, const std::string& guest_path);

/// The guest path that `guest_path` finally points to, following every symlink
/// (at most 40) inside `root`. Empty when something on the way does not exist.
std::string resolve_in_root(const std::string& root, const std::string& guest_path);

/// The directory part of a path ("/a/b" -> "/a", "/a" -> "/", "a" -> ".").
std::string parent_dir(const std::string& path);

/// The whole file, exactly (at most `max_bytes`), not following a final symlink;
/// std::runtime_error naming it otherwise.
std::string read_exact_file(const std::string& path, std::size_t max_bytes);

/// A whole small file (at most max_bytes), or empty on any error; trailing whitespace cut.
std::string read_small_file(const std::string& path, std::size_t max_bytes = 4096);

}  // namespace sprout::agent
