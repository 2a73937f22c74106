#include "image/image_users.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "base/leftovers.h"
#include "base/sha256.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

/// Makes `dir` (0700, durably) unless it exists; it must be a real directory, not a
/// link. Adds it to `added` when it made it.
void private_directory(const fs::path& dir, std::vector<fs::path>& added) {
  if (::mkdir(dir.c_str(), 0700) == 0) {
    added.push_back(dir);
    fsync_directory(dir.parent_path());
  } else if (errno != EEXIST)
    throw std::system_error(errno, std::generic_category(), "cannot create " + dir.string());
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0)
    throw std::system_error(errno, std::generic_category(), "cannot stat " + dir.string());
  if (!S_ISDIR(st.st_mode))
    throw std::system_error(ENOTDIR, std::generic_category(),
                            dir.string() + " is not the directory sprout keeps image users in; move it away");
  if (st.st_uid == ::geteuid() && (st.st_mode & 07777) != 0700) ::chmod(dir.c_str(), 0700);
}

/// CACHE/users when it is a real directory (never a link to elsewhere), else "".
fs::path users_dir(const fs::path& cache_dir) {
  fs::path users = cache_dir / kImageUsersDir;
  std::error_code ec;
  return fs::is_directory(fs::symlink_status(users, ec)) ? users : fs::path();
}

/// record_image_user, adding what it made to `added` (outermost first). A record that
/// replaces another (of a link of the same name's hash) is not undone.
void record_user(const fs::path& image, const fs::path& link, std::vector<fs::path>& added) {
  fs::path users = image.parent_path() / kImageUsersDir;
  private_directory(users, added);
  fs::path dir = users / image.filename();
  private_directory(dir, added);
  fs::path record = dir / user_record_name(link);
  std::error_code ec;
  auto st = fs::symlink_status(record, ec);
  if (fs::is_symlink(st) && fs::read_symlink(record, ec) == link) return;
  const bool is_new = !fs::exists(st);
  symlink_atomic(link, record);
  if (is_new) added.push_back(record);
  // Durable before the link is: a crash must not leave a link without its record.
  fsync_directory(dir);
}

}  // namespace

std::string user_record_name(const fs::path& link) { return sha256_hex(link.string()).substr(0, 32); }

void record_image_user(const fs::path& image, const fs::path& link) {
  std::vector<fs::path> added;
  record_user(image, link, added);
}

PendingImageUser::PendingImageUser(const fs::path& image, const fs::path& link) {
  try {
    record_user(image, link, added_);
  } catch (...) {
    undo();  // what was made before the failure
    throw;
  }
}

PendingImageUser::~PendingImageUser() { undo(); }

void PendingImageUser::undo() {
  for (auto it = added_.rbegin(); it != added_.rend(); ++it) {
    std::error_code ec;
    fs::remove(*it, ec);  // a directory only while empty: another export's record stays
    if (ec && ec != std::errc::directory_not_empty)
      spdlog::warn("cannot remove {}, made for a link that was not made: {}", it->string(), ec.message());
  }
  added_.clear();
}

bool link_uses_image(const fs::path& link, const fs::path& image) {
  struct stat ls, ts, is;
  return ::lstat(link.c_str(), &ls) == 0 && S_ISLNK(ls.st_mode) && ::stat(link.c_str(), &ts) == 0 &&
         ::lstat(image.c_str(), &is) == 0 && ts.st_dev == is.st_dev && ts.st_ino == is.st_ino;
}

ImageUsers read_image_users(const fs::path& cache_dir) {
  ImageUsers out;
  std::error_code ec;
  fs::path users = users_dir(cache_dir);
  if (users.empty()) return out;
  for (const auto& image_dir : fs::directory_iterator(users, ec)) {
    std::error_code dec;
    if (!image_dir.is_directory(dec) || image_dir.is_symlink(dec)) continue;  // not ours
    fs::path image = cache_dir / image_dir.path().filename();
    auto leftovers = remove_leftovers(image_dir.path(), /*dry_run=*/true);  // only lists them
    out.stale.insert(out.stale.end(), leftovers.begin(), leftovers.end());
    for (const auto& record : fs::directory_iterator(image_dir.path(), dec)) {
      auto name = record.path().filename().string();
      std::error_code rec;
      if (!record.is_symlink(rec) || name.empty() || name[0] == '.') continue;  // a temporary, or not ours
      fs::path link = fs::read_symlink(record.path(), rec);
      if (!rec && link.is_absolute() && link_uses_image(link, image))
        out.used[image.filename().string()].push_back(link);
      else
        out.stale.push_back(record.path());
    }
  }
  return out;
}

void drop_stale_users(const fs::path& cache_dir, const std::vector<fs::path>& stale) {
  for (const auto& p : stale) {
    std::error_code ec;
    fs::remove(p, ec);
    if (ec) spdlog::warn("cannot remove the user record {}: {}", p.string(), ec.message());
  }
  fs::path users = users_dir(cache_dir);
  if (users.empty()) return;
  std::error_code ec;
  for (const auto& image_dir : fs::directory_iterator(users, ec)) {
    std::error_code dec;
    if (image_dir.is_directory(dec) && !image_dir.is_symlink(dec) && fs::is_empty(image_dir.path(), dec))
      fs::remove(image_dir.path(), dec);
  }
}

}  // namespace sprout
