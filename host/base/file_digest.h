// The SHA-256 of a whole file, remembered: a file of gigabytes (a base image) is hashed
// once, and later asked again only while it is unchanged. The digest is kept in
// `memo_dir` (one small file per path, named by the path's hash) with the file's
// device, inode, size, mtime and ctime; it is trusted only while all five are
// unchanged, as git trusts its index, and never kept for a file changed within the
// last two seconds (its timestamps could still hide a same-second change). A memo
// that cannot be written or read only means hashing again.
#pragma once

#include <filesystem>
#include <string>

namespace sprout {

/// Lower-case hex SHA-256 of `file`'s bytes. std::system_error naming the file when
/// it cannot be read.
std::string file_sha256(const std::filesystem::path& file, const std::filesystem::path& memo_dir);

}  // namespace sprout
