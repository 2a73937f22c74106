#include "early.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <set>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "disk_finder.h"
#include "disk_role.h"
#include "root_path.h"

namespace sprout::agent {

namespace {

constexpr std::size_t kMaxFile = 1 << 20;  // the host's limit for one secret (identity/secrets_source.h)

std::string read_exact(const std::string& path, std::size_t max = kMaxFile) { return read_exact_file(path, max); }

/// `path` and its parents made where missing (the last with `mode`, parents 0755).
void make_directories(const std::string& path, mode_t mode) {
  for (std::size_t pos = 1; pos != std::string::npos;) {
    pos = path.find('/', pos + 1);
    const std::string done = path.substr(0, pos);
    if (::mkdir(done.c_str(), pos == std::string::npos ? mode : 0755) != 0 && errno != EEXIST)
      throw std::runtime_error(fmt::format("cannot create {}: {}", done, std::strerror(errno)));
  }
}

/// A directory made (with parents) if missing, then given `mode` and root as owner.
void private_directory(const std::string& path, mode_t mode) {
  make_directories(path, mode);
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw std::runtime_error(fmt::format("{} is not a directory", path));
  if (::chmod(path.c_str(), mode) != 0)
    throw std::runtime_error(fmt::format("cannot chmod {}: {}", path, std::strerror(errno)));
  if (::geteuid() == 0 && (st.st_uid != 0 || st.st_gid != 0) && ::chown(path.c_str(), 0, 0) != 0)
    throw std::runtime_error(fmt::format("cannot chown {}: {}", path, std::strerror(errno)));
}

/// Writes `path` with `bytes` and `mode` unless it already holds exactly that.
bool install(const std::string& path, const std::string& bytes, mode_t mode) {
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 07777) == mode &&
      static_cast<std::size_t>(st.st_size) == bytes.size()) {
    try {
      if (read_exact(path) == bytes) return false;
    } catch (const std::exception&) {
    }
  }
  write_file_atomic(path, bytes, mode);
  return true;
}

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> out;
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), ::closedir);
  if (!d) return out;
  while (dirent* e = ::readdir(d.get())) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  return out;
}

int install_from(const EarlyOptions& o, const std::string& disk) {
  // The host key, where sshd reads it.
  const std::string ssh_dir = under_root(o.root, o.ssh_dir);
  const std::string key = read_exact(disk + "/identity/ssh_host_ed25519_key");
  const std::string pub = read_exact(disk + "/identity/ssh_host_ed25519_key.pub");
  make_directories(ssh_dir, 0755);
  bool changed = install(ssh_dir + "/ssh_host_ed25519_key", key, 0600);
  changed = install(ssh_dir + "/ssh_host_ed25519_key.pub", pub, 0644) || changed;
  spdlog::info("ssh host key {}: {}", changed ? "installed" : "already in place", pub.substr(0, pub.find('\n')));

  // The secrets, for root alone.
  const std::string secrets = under_root(o.root, o.secrets_dir);
  private_directory(secrets, 0700);
  std::set<std::string> offered;
  for (const auto& name : names_in(disk + "/secrets")) {
    const std::string from = disk + "/secrets/" + name;
    struct stat st;
    if (::lstat(from.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;  // the host writes regular files only
    install(secrets + "/" + name, read_exact(from), 0400);
    offered.insert(name);
  }
  for (const auto& name : names_in(secrets))
    if (!offered.count(name)) ::unlink((secrets + "/" + name).c_str());
  spdlog::info("{} secret{} offered in {}", offered.size(), offered.size() == 1 ? "" : "s", o.secrets_dir);

  // The machine-id: the host's, if systemd took it.
  const std::string want = read_exact(disk + "/identity/machine-id", 64);
  const std::string have = read_small_file(under_root(o.root, "/etc/machine-id"), 64);
  auto line = [](std::string s) { return s.substr(0, s.find('\n')); };
  if (line(have) == line(want))
    spdlog::info("machine-id {} (the host's)", line(want));
  else
    spdlog::warn("machine-id is {}, not the host's {}: systemd takes the credential system.machine_id only on a "
                 "boot that finds /etc/machine-id empty (a first boot), and only from version 254; this disk's "
                 "machine-id was set before, or this systemd is older",
                 have.empty() ? "unset" : line(have), line(want));
  return 0;
}

}  // namespace

int run_early(const EarlyOptions& o, Mounter& mounter) {
  try {
    auto found = find_disks(o.root, {DiskRole::secrets}, o.disk_wait);
    if (!found.count(DiskRole::secrets)) {
      spdlog::info("no secrets disk (serial {}): nothing to install", role_info(DiskRole::secrets).serial);
      return 0;
    }
    private_directory(under_root(o.root, o.mount_point), 0700);
    MountResult r = mounter.mount(MountRequest{found.at(DiskRole::secrets).device, o.mount_point, true});
    if (!r.ok) {
      spdlog::error("cannot mount the secrets disk: {}", r.error);
      return 1;
    }
    int status = 1;
    try {
      status = install_from(o, under_root(o.root, o.mount_point));
    } catch (const std::exception& e) {
      spdlog::error("{}", e.what());
    }
    if (::umount2(under_root(o.root, o.mount_point).c_str(), MNT_DETACH) != 0)
      spdlog::debug("umount {}: {}", o.mount_point, std::strerror(errno));
    return status;
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return 1;
  }
}

}  // namespace sprout::agent
