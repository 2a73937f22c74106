// Directories another user may pass through but not list (0711), for the way from
// `/` to the files a hypervisor running as another user is handed (libvirt's
// unprivileged qemu): mkdir -p, but the umask does not decide their mode.
#pragma once

#include <filesystem>

namespace sprout {

/// Makes `dir` and each missing ancestor, outermost first, every one it makes 0711
/// whatever the umask (a umask of 077, as sprout's units run with, would make them 0700,
/// a dead end for any other user). Existing directories are left as they are.
/// Throws std::system_error naming the directory that could not be made.
void make_traversable_dirs(const std::filesystem::path& dir);

}  // namespace sprout
