#include "mounter.h"

#include <libmount/libmount.h>
#include <sys/stat.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include <fmt/format.h>

#include "root_path.h"

namespace sprout::agent {

std::string mount_options(bool noexec) { return noexec ? "ro,nosuid,nodev,noexec,noload" : "ro,nosuid,nodev,noload"; }

namespace {

// Major:minor of a block device node, or 0.
dev_t rdev_of(const std::string& p) {
  struct stat st;
  if (::stat(p.c_str(), &st) != 0 || !S_ISBLK(st.st_mode)) return 0;
  return st.st_rdev;
}

/// Whether something is mounted on directory `dir`: it is on another filesystem than
/// its parent, or it is its own parent (/). No mount table needed.
bool is_mount_point(const std::string& dir) {
  struct stat st, parent;
  if (::stat(dir.c_str(), &st) != 0 || ::stat((dir + "/..").c_str(), &parent) != 0) return false;
  return st.st_dev != parent.st_dev || st.st_ino == parent.st_ino;
}

}  // namespace

LibMounter::~LibMounter() {
  if (cxt_) mnt_free_context(cxt_);
  if (table_) mnt_unref_table(table_);
}

libmnt_table* LibMounter::table() {
  if (!table_read_) {
    table_read_ = true;
    table_ = mnt_new_table_from_file(under_root(root_, "/proc/self/mountinfo").c_str());
  }
  return table_;
}

namespace {

/// Empty when `target` is mounted ro,nosuid,nodev (and noexec when asked); otherwise
/// remounts it so (a bind remount changes only this mount's flags) and says why when
/// that fails.
std::string ensure_safe_flags(const std::string& target, const MountRequest& r) {
  unsigned long want = ST_RDONLY | ST_NOSUID | ST_NODEV | (r.noexec ? ST_NOEXEC : 0);
  struct statvfs v;
  if (::statvfs(target.c_str(), &v) != 0) return fmt::format("and its flags cannot be read: {}", std::strerror(errno));
  if ((v.f_flag & want) == want) return "";
  // A bind remount sets exactly the flags it is given: keep the ones already there.
  unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | (r.noexec ? MS_NOEXEC : 0);
  if (v.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
  if (v.f_flag & ST_NOATIME) flags |= MS_NOATIME;
  if (v.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
  if (v.f_flag & ST_RELATIME) flags |= MS_RELATIME;
  if (::mount(nullptr, target.c_str(), nullptr, flags, nullptr) != 0)
    return fmt::format("without ro,nosuid,nodev{}, and remounting it so failed: {}", r.noexec ? ",noexec" : "",
                       std::strerror(errno));
  if (::statvfs(target.c_str(), &v) != 0 || (v.f_flag & want) != want)
    return fmt::format("without ro,nosuid,nodev{}, and a remount did not change that", r.noexec ? ",noexec" : "");
  return "";
}

}  // namespace

MountResult LibMounter::mount(const MountRequest& r) {
  MountResult res;
  std::string target = under_root(root_, r.mount_point);
  std::string source = under_root(root_, r.device);
  std::error_code ec;
  ensure_directory(target, ec);
  if (ec) {
    res.error = fmt::format("cannot create mount point {}: {}", r.mount_point, ec.message());
    return res;
  }
  // Already mounted here? (the agent ran twice, or the system mounted it.) The mount
  // table is read only then: the normal boot never parses it.
  if (libmnt_table* tab = is_mount_point(target) ? table() : nullptr) {
    libmnt_fs* f = mnt_table_find_target(tab, target.c_str(), MNT_ITER_BACKWARD);
    if (f) {
      dev_t want = rdev_of(source);
      const char* src = mnt_fs_get_source(f);
      if ((want != 0 && mnt_fs_get_devno(f) == want) || (src && source == src)) {
        res.already = true;
        // Somebody else's mount of our disk: it must be as safe as ours.
        if (std::string why = ensure_safe_flags(target, r); !why.empty()) {
          res.error = fmt::format("{} is already mounted at {}, {}", r.device, r.mount_point, why);
          return res;
        }
        res.ok = true;
        return res;
      }
      res.error = fmt::format("{} is already mounted at {} (from {}), not {}", r.mount_point, r.mount_point,
                              src ? src : "?", r.device);
      return res;
    }
  }
  if (cxt_) {
    mnt_reset_context(cxt_);
  } else if (!(cxt_ = mnt_new_context())) {
    res.error = "libmount: out of memory";
    return res;
  }
  libmnt_context* cxt = cxt_;
  mnt_context_disable_mtab(cxt, 1);
  mnt_context_disable_helpers(cxt, 1);
  mnt_context_disable_canonicalize(cxt, 1);
  mnt_context_set_optsmode(cxt, MNT_OMODE_IGNORE);
  mnt_context_set_source(cxt, source.c_str());
  mnt_context_set_target(cxt, target.c_str());
  mnt_context_set_fstype(cxt, "ext4");
  std::string opts = mount_options(r.noexec);
  mnt_context_set_mflags(cxt, MS_RDONLY | MS_NOSUID | MS_NODEV | (r.noexec ? MS_NOEXEC : 0));
  mnt_context_set_options(cxt, "noload");
  int rc = mnt_context_mount(cxt);
  if (rc == 0 && mnt_context_get_status(cxt) == 1) {
    res.ok = true;
    // Later checks see this mount as a fresh read of mountinfo would.
    if (table_) {
      if (libmnt_fs* copy = mnt_copy_fs(nullptr, mnt_context_get_fs(cxt))) {
        mnt_table_add_fs(table_, copy);
        mnt_unref_fs(copy);
      }
    }
  } else {
    char buf[512] = {0};
    mnt_context_get_excode(cxt, rc, buf, sizeof buf);
    int err = mnt_context_get_syscall_errno(cxt);
    res.error = fmt::format("mounting {} at {} ({}) failed: {}{}", r.device, r.mount_point, opts,
                            buf[0] ? buf : "libmount error", err ? fmt::format(" ({})", std::strerror(err)) : "");
  }
  return res;
}

std::map<std::string, std::string> LibMounter::options_of(const std::vector<std::string>& mount_points) {
  std::map<std::string, std::string> out;
  for (const auto& mp : mount_points) {
    struct statvfs v;
    std::string target = under_root(root_, mp);
    if (::statvfs(target.c_str(), &v) != 0) continue;
    std::string o = (v.f_flag & ST_RDONLY) ? "ro" : "rw";
    for (auto [flag, name] : {std::pair{ST_NOSUID, "nosuid"}, {ST_NODEV, "nodev"}, {ST_NOEXEC, "noexec"},
                              {ST_NOATIME, "noatime"}, {ST_NODIRATIME, "nodiratime"}, {ST_RELATIME, "relatime"}})
      if (v.f_flag & flag) o.append(",").append(name);
    out[mp] = o;
  }
  return out;
}

}  // namespace sprout::agent
