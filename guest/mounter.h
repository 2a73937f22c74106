// Mounting the exported disks. Mounter is the seam unit tests replace; LibMounter
// mounts with libmount (mnt_context): ext4, ro,nosuid,nodev,noload (+noexec for the
// ssh disk), creating the mount point first. The flags are handed to libmount as
// flags (no option string to parse), and it neither canonicalizes paths nor reads
// fstab or mtab: each of those costs milliseconds at every boot under emulation. A mount point that already has this
// device mounted (the agent ran twice) is not an error; a different device there is.
// Whether a directory is a mount point is told by stat (another st_dev than its
// parent's); only then is /proc/self/mountinfo read (once, as a libmount table the
// mounter keeps, adding what it mounts itself). options_of() asks the kernel
// (statvfs) which flags each mount really has. One mount context is reused.
#pragma once

#include <map>
#include <string>
#include <vector>

struct libmnt_table;
struct libmnt_context;

namespace sprout::agent {

struct MountRequest {
  std::string device;       ///< guest path, /dev/vdb
  std::string mount_point;  ///< guest path
  bool noexec = false;
};

struct MountResult {
  bool ok = false;
  /// it was mounted before; then it is ro,nosuid,nodev (and noexec when asked), made
  /// so by a bind remount when it was not, or `ok` is false and `error` says why
  bool already = false;
  std::string error;     ///< why not, naming device and mount point
};

class Mounter {
 public:
  virtual ~Mounter() = default;
  virtual MountResult mount(const MountRequest& r) = 0;
  /// mount point (guest path, one this mounter mounted) -> the flags the kernel
  /// enforces on it (statvfs), as
  /// "ro|rw[,nosuid][,nodev][,noexec][,noatime][,nodiratime][,relatime]".
  virtual std::map<std::string, std::string> options_of(const std::vector<std::string>& mount_points) = 0;
};

/// The real one. `root` prefixes the mount points and /proc/self/mountinfo.
class LibMounter : public Mounter {
 public:
  explicit LibMounter(std::string root) : root_(std::move(root)) {}
  ~LibMounter() override;
  LibMounter(const LibMounter&) = delete;
  LibMounter& operator=(const LibMounter&) = delete;
  MountResult mount(const MountRequest& r) override;
  std::map<std::string, std::string> options_of(const std::vector<std::string>& mount_points) override;

 private:
  libmnt_table* table();  ///< mountinfo as read once, plus this mounter's own mounts; may be null

  std::string root_;
  libmnt_table* table_ = nullptr;
  bool table_read_ = false;
  libmnt_context* cxt_ = nullptr;
};

/// The options string the agent mounts with.
std::string mount_options(bool noexec);

}  // namespace sprout::agent
