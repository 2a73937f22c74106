#include "libvirt/libvirt_disk_access.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/file_acl.h"
#include "disk_role.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

/// An open regular file (not followed if it is a link), closed on scope exit.
class OpenFile {
 public:
  explicit OpenFile(const fs::path& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd_ < 0) throw std::runtime_error(fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
    if (::fstat(fd_, &st_) != 0 || !S_ISREG(st_.st_mode)) {
      ::close(fd_);
      throw std::runtime_error(fmt::format("{}: not a regular file", path.string()));
    }
  }
  ~OpenFile() { ::close(fd_); }
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;

  int fd() const { return fd_; }
  const struct stat& st() const { return st_; }
  const fs::path& path() const { return path_; }

  void chown(uid_t uid, gid_t gid, const char* why) {
    if (::fchown(fd_, uid, gid) != 0)
      throw std::runtime_error(fmt::format("{}: cannot give it to {}:{} ({}): {}", path_.string(), uid, gid, why,
                                           std::strerror(errno)));
    ::fstat(fd_, &st_);
  }
  void chmod(mode_t mode) {
    if (::fchmod(fd_, mode) != 0)
      throw std::runtime_error(fmt::format("{}: cannot chmod {:o}: {}", path_.string(), mode, std::strerror(errno)));
    ::fstat(fd_, &st_);
  }

 private:
  fs::path path_;
  int fd_ = -1;
  struct stat st_ {};
};

bool present(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

/// A shared disk for `uid`: taken back from libvirt's qemu user (a cached image from
/// anyone but its owner), readable by `uid` through its ACL unless anyone may read it.
void open_shared(const fs::path& path, bool cached, uid_t uid, std::optional<uid_t> libvirt_qemu_uid) {
  OpenFile f(path);
  const uid_t me = ::geteuid();
  if (f.st().st_uid != me && (cached || (libvirt_qemu_uid && f.st().st_uid == *libvirt_qemu_uid))) {
    spdlog::warn("{}: owned by uid {} (libvirt's qemu user, which an earlier sprout let libvirt give it to); "
                 "taking it back",
                 path.string(), f.st().st_uid);
    f.chown(me, ::getegid(), "taking it back from libvirt's qemu user");
    // Its former owner may have added ACL entries of its own: none is kept.
    if (::fremovexattr(f.fd(), "system.posix_acl_access") != 0 && errno != ENODATA && errno != EOPNOTSUPP)
      throw std::runtime_error(
          fmt::format("{}: cannot remove the ACL its former owner could set: {}", path.string(), std::strerror(errno)));
    f.chmod(cached ? 0400 : (f.st().st_mode & 07755 & ~S_ISUID & ~S_ISGID));
  }
  if ((f.st().st_mode & S_IROTH) != 0) return;  // anyone may read it (a store path)
  grant_read(f.fd(), path, uid);
}

/// One of the VM's own disks: its uid's (libvirt gives it the same at each start).
void give_own(const fs::path& path, uid_t uid) {
  OpenFile f(path);
  if (f.st().st_uid != uid || f.st().st_gid != uid) f.chown(uid, uid, "the VM's own disk, for its qemu");
}

}  // namespace

bool local_system_libvirt(const std::string& u) {
  auto is = [&](std::string_view base) {
    return u.rfind(base, 0) == 0 && (u.size() == base.size() || u[base.size()] == '?' || u[base.size()] == '/');
  };
  return is("qemu:///system") || is("qemu+unix:///system");
}

bool vm_uid_applies(const Spec& spec) { return ::geteuid() == 0 && local_system_libvirt(spec.libvirt_uri); }

std::optional<gid_t> kvm_gid_for(bool kvm) {
  struct stat st;
  if (kvm && ::stat("/dev/kvm", &st) == 0 && (st.st_mode & 0006) != 0006 && (st.st_mode & 0060) == 0060)
    return st.st_gid;
  return std::nullopt;
}

std::vector<fs::path> shared_disks(const Spec& spec, const fs::path& backing) {
  std::vector<fs::path> out;
  for (const auto& info : disk_roles()) {
    if (info.role == DiskRole::secrets) continue;
    const fs::path link = spec.exported_image(info.name);
    std::error_code ec;
    if (present(link)) out.push_back(fs::canonical(link, ec));
  }
  if (present(backing)) out.push_back(fs::canonical(backing));
  return out;
}

void open_disks_to(const Spec& spec, const fs::path& backing, uid_t uid, std::optional<uid_t> libvirt_qemu_uid) {
  const fs::path cache = present(spec.cache_dir) ? fs::canonical(spec.cache_dir) : spec.cache_dir;
  for (const auto& disk : shared_disks(spec, backing)) {
    const auto rel = disk.lexically_relative(cache);
    const bool cached = !rel.empty() && *rel.begin() != "..";
    open_shared(disk, cached, uid, libvirt_qemu_uid);
  }
  for (const fs::path& own : {spec.overlay_path(), spec.exported_image("secrets")})
    if (present(own)) give_own(own, uid);
  spdlog::debug("{}: disks opened to uid {}", spec.name, uid);
}

int close_shared_disks_to(const Spec& spec, const fs::path& backing, uid_t uid, int* failed) {
  int removed = 0;
  auto close_one = [&](const fs::path& p) {
    try {
      OpenFile f(p);
      const bool had = acl_names_user(read_access_acl(f.fd(), p), uid);
      revoke(f.fd(), p, uid);
      removed += had ? 1 : 0;
    } catch (const std::exception& e) {
      spdlog::warn("{}: uid {} keeps its ACL entry: {}", p.string(), uid, e.what());
      if (failed) ++*failed;
    }
  };
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(spec.cache_dir, ec))
    if (e.is_regular_file(ec) && !e.is_symlink(ec)) close_one(e.path());
  if (present(backing)) close_one(fs::canonical(backing));
  return removed;
}

}  // namespace sprout
