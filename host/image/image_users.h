// Who uses a cached image, recorded next to it the way Nix records indirect GC roots:
// before a link (a VM's STATE/ROLE.img) is pointed at CACHE/IMAGE, export creates
//   CACHE/users/IMAGE/HASH -> the link's absolute path
// (HASH: the first 32 hex digits of the SHA-256 of that path, so any path gives a
// safe, stable name). A record is only a claim: it counts while the link it names is
// a symlink that resolves to that very image, whatever spec directory the VM belongs
// to. gc keeps every image some record counts for and drops the records that no
// longer count (the link is gone or points elsewhere). Made under the cache's shared
// lock, read and pruned under its exclusive lock (cache_lock.h). CACHE/users and its
// subdirectories are 0700: another user cannot list which VMs exist.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace sprout {

/// The name of the directory of user records in a cache directory.
inline constexpr const char* kImageUsersDir = "users";

/// The record's name for `link`: stable, and safe for any path.
std::string user_record_name(const std::filesystem::path& link);

/// Records that `link` (absolute) uses `image` (CACHE/IMAGE, absolute), atomically.
/// Call under the cache lock and before `link` is made to point at `image`, so a link
/// never exists without its record. Throws std::system_error.
void record_image_user(const std::filesystem::path& image, const std::filesystem::path& link);

/// record_image_user for a link about to be made: unless keep() is called (the link
/// was made), the destructor removes what the constructor added (the record, and the
/// directories made for it), so a link that could not be made leaves CACHE/users as
/// it was.
class PendingImageUser {
 public:
  PendingImageUser(const std::filesystem::path& image, const std::filesystem::path& link);
  ~PendingImageUser();
  PendingImageUser(const PendingImageUser&) = delete;
  PendingImageUser& operator=(const PendingImageUser&) = delete;
  void keep() { added_.clear(); }

 private:
  void undo();
  std::vector<std::filesystem::path> added_;  ///< outermost first
};

/// True when `link` is a symlink and resolves to `image` itself (the same file).
bool link_uses_image(const std::filesystem::path& link, const std::filesystem::path& image);

struct ImageUsers {
  /// Image names (CACHE/NAME) with at least one record that counts.
  std::map<std::string, std::vector<std::filesystem::path>> used;
  /// Records whose link is gone or no longer resolves to their image, and
  /// temporaries of record writers that are gone (leftovers.h).
  std::vector<std::filesystem::path> stale;
};

/// Reads CACHE/users. Changes nothing. Never throws.
ImageUsers read_image_users(const std::filesystem::path& cache_dir);

/// Removes `stale` records, then every CACHE/users/IMAGE directory left empty.
/// Never throws; what cannot be removed is warned about.
void drop_stale_users(const std::filesystem::path& cache_dir, const std::vector<std::filesystem::path>& stale);

}  // namespace sprout
