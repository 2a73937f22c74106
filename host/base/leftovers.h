// Temporary files a killed sprout left behind. Every temporary name sprout makes
// carries the process id of its maker (".NAME.tmp-PID-N" from atomic_file,
// ".NAME.tmp-PID" for links, ".staging-PID-XXXXXX" staging trees); a leftover is
// one whose maker no longer runs. Removing those at the next export, prepare or gc is what keeps kill -9 from
// leaking disk space. A name without a pid is never a leftover here.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace sprout {

/// The pid in a temporary name sprout makes, or nullopt for any other name.
std::optional<pid_t> temporary_owner(const std::string& name);

/// True when no process `pid` exists (kill(pid, 0) fails with ESRCH).
bool process_is_gone(pid_t pid);

/// Removes (recursively) the entries of `dir` that are temporaries of processes that
/// are gone, and returns them; with dry_run only returns them. Never throws.
/// Read-only directories inside them (a copied 0555 tree) are made writable first.
std::vector<std::filesystem::path> remove_leftovers(const std::filesystem::path& dir, bool dry_run = false);

/// remove_all that first gives every directory under `path` (symlinks not followed)
/// its owner's rwx, so a copy of a read-only tree can be removed by a non-root user.
void remove_tree(const std::filesystem::path& path, std::error_code& ec);

}  // namespace sprout
