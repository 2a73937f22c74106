// A file's POSIX access ACL (the system.posix_acl_access extended attribute), read and
// written without libacl: what sprout needs to let one more user read a file it owns
// without making the file that user's or anybody else's (`grant_read`), and to take
// that back (`revoke`). The encoding functions are pure and unit-tested; the kernel
// keeps the mode's group bits equal to the ACL's mask, and stores no ACL at all for
// one that says no more than the mode.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>

namespace sprout {

/// The ACL `xattr` (a system.posix_acl_access value; "" = the file has none, its mode
/// `mode` is all) with user `uid` given read only (`readable`) or given nothing of its
/// own (its entry removed), the mask recomputed. Always a full ACL, never "": the
/// kernel turns one equivalent to a mode into that mode. std::invalid_argument for a
/// value that is not a version-2 ACL.
std::string acl_with_user(std::string_view xattr, mode_t mode, uid_t uid, bool readable);

/// Whether `xattr` has an entry for user `uid` that reads.
bool acl_names_user(std::string_view xattr, uid_t uid);

/// The access ACL of the file open as `fd` ("" when it has none).
std::string read_access_acl(int fd, const std::filesystem::path& what);

/// Lets user `uid` read the file open as `fd` (`what` names it in errors), changing
/// nothing else. std::runtime_error naming the file when its file system takes no
/// ACLs or refuses the change.
void grant_read(int fd, const std::filesystem::path& what, uid_t uid);
/// Removes user `uid`'s entry from the file's ACL (nothing when it has none).
void revoke(int fd, const std::filesystem::path& what, uid_t uid);

}  // namespace sprout
