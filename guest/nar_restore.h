// A NAR (Nix ARchive) unpacked into a directory, in one pass, as Nix leaves a store
// path: regular files 0444 (0555 when executable), directories 0555, symlinks as
// they are, every modification time 1 (Nix's canonical store metadata). Every byte
// read is hashed on the way (SHA-256, Nix's NAR hash, or XXH3-128, the closure disk's
// checksum: common/nar_checksum.h), so the caller compares the NAR with its recorded
// digest before anything is registered. A NAR that is not well formed (an
// unknown tag, entries out of order or repeated, a name with '/', ".", "..", a
// string over its bound, bytes after its end) is refused, naming what and where.
// Nothing is followed: the new entries are made relative to directory descriptors
// (openat, mkdirat, symlinkat), O_NOFOLLOW and O_EXCL.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sprout::agent {

enum class NarDigest { sha256, xxh3_128 };

struct NarRestored {
  std::uint64_t size = 0;  ///< bytes read: the NAR's size
  std::string digest_hex;  ///< of those bytes, of the kind asked for
  std::uint64_t files = 0, directories = 0, symlinks = 0;
};

/// Reads a NAR from `nar_fd` until its end and creates it as `name` in the directory
/// `dir_fd` (`name` must not exist). `buffer` is scratch space reused across calls
/// (1 MiB). The modes are given as the entries are made: the process's umask must
/// leave 0555 alone (022 does). `what` names the NAR in errors. std::runtime_error for a malformed NAR,
/// std::system_error (naming the entry) for a call that failed; what was created
/// before the error stays (the caller removes it).
NarRestored restore_nar(int nar_fd, int dir_fd, const std::string& name, const std::string& what,
                        std::vector<char>& buffer, NarDigest digest = NarDigest::sha256);

/// Removes `path` and everything below it, whatever its modes (a store path is
/// read-only): "" when done or when nothing was there, else what failed.
std::string remove_tree(const std::string& path);

}  // namespace sprout::agent
