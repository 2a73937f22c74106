#include "disk_finder.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <thread>

#include "root_path.h"

namespace sprout::agent {

std::optional<std::string> read_ext4_label(const std::string& device) {
  int fd = ::open(device.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return std::nullopt;
  unsigned char sb[136];
  ssize_t n = ::pread(fd, sb, sizeof sb, 1024);  // the superblock starts at byte 1024
  ::close(fd);
  if (n != static_cast<ssize_t>(sizeof sb)) return std::nullopt;
  if (sb[56] != 0x53 || sb[57] != 0xEF) return std::nullopt;  // s_magic at 1024+56
  std::string label(reinterpret_cast<const char*>(sb + 120), 16);
  label.resize(label.find('\0') == std::string::npos ? 16 : label.find('\0'));
  return label;
}

namespace {

std::vector<std::string> block_devices(const std::string& root) {
  std::vector<std::string> names;
  std::string dir = under_root(root, "/sys/block");
  DIR* d = ::opendir(dir.c_str());
  if (!d) return names;
  while (auto* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    names.emplace_back(e->d_name);
  }
  ::closedir(d);
  return names;
}

// /dev/NAME exists or is made from /sys/block/NAME/dev.
bool ensure_node(const std::string& root, const std::string& name) {
  std::string node = under_root(root, "/dev/" + name);
  if (::access(node.c_str(), F_OK) == 0) return true;
  std::string majmin = read_small_file(under_root(root, "/sys/block/" + name + "/dev"));
  auto colon = majmin.find(':');
  if (colon == std::string::npos) return false;
  unsigned ma = static_cast<unsigned>(std::atoi(majmin.substr(0, colon).c_str()));
  unsigned mi = static_cast<unsigned>(std::atoi(majmin.substr(colon + 1).c_str()));
  return ::mknod(node.c_str(), S_IFBLK | 0600, makedev(ma, mi)) == 0 || errno == EEXIST;
}

FoundDisk make_found(const std::string& root, DiskRole role, const std::string& name, const char* by) {
  FoundDisk f;
  f.role = role;
  f.sys_name = name;
  f.device = "/dev/" + name;
  f.found_by = by;
  f.read_only = read_small_file(under_root(root, "/sys/block/" + name + "/ro")) == "1";
  return f;
}

/// udev's /dev/disk/by-id/virtio-SERIAL link, when it exists and the disk it names
/// still has that serial: the device's name (vdb), else "".
std::string by_id_link(const std::string& root, const std::string& serial) {
  char buf[256];
  ssize_t n = ::readlink(under_root(root, "/dev/disk/by-id/virtio-" + serial).c_str(), buf, sizeof buf);
  if (n <= 0 || static_cast<std::size_t>(n) >= sizeof buf) return {};
  std::string_view target(buf, static_cast<std::size_t>(n));
  std::string name(target.substr(target.rfind('/') + 1));  // "../../vdb" -> "vdb"
  if (name.empty() || name == "." || name == "..") return {};
  if (read_small_file(under_root(root, "/sys/block/" + name + "/serial"), 64) != serial) return {};
  return name;
}

}  // namespace

std::map<DiskRole, FoundDisk> scan_disks(const std::string& root, const std::vector<DiskRole>& roles) {
  std::map<DiskRole, FoundDisk> out;
  // udev's links (NixOS has them by the time the agent runs): no directory scan.
  std::vector<DiskRole> rest;
  for (DiskRole r : roles) {
    const auto& info = role_info(r);
    std::string name = by_id_link(root, std::string(info.serial));
    if (!name.empty() && ensure_node(root, name)) out.emplace(r, make_found(root, r, name, "by-id"));
    else rest.push_back(r);
  }
  if (rest.empty()) return out;
  auto names = block_devices(root);
  std::map<std::string, std::string> serials;
  for (const auto& n : names) serials[n] = read_small_file(under_root(root, "/sys/block/" + n + "/serial"), 64);
  std::vector<DiskRole> missing;
  for (DiskRole r : rest) {
    const auto& info = role_info(r);
    bool found = false;
    for (const auto& n : names) {
      if (serials[n] == info.serial && ensure_node(root, n)) {
        out.emplace(r, make_found(root, r, n, "serial"));
        found = true;
        break;
      }
    }
    if (!found) missing.push_back(r);
  }
  if (missing.empty()) return out;
  // Label fallback: udev's by-label link first, then the superblocks themselves.
  std::map<std::string, std::optional<std::string>> labels;
  for (DiskRole r : missing) {
    const auto& info = role_info(r);
    std::string link = resolve_in_root(root, "/dev/disk/by-label/" + std::string(info.label));
    if (!link.empty() && link.rfind("/dev/", 0) == 0) {
      out.emplace(r, make_found(root, r, link.substr(5), "label"));
      continue;
    }
    for (const auto& n : names) {
      if (!serials[n].empty() && serials[n].rfind("sprout-", 0) == 0 && serials[n] != info.serial) continue;
      if (!labels.count(n)) labels[n] = ensure_node(root, n) ? read_ext4_label(under_root(root, "/dev/" + n))
                                                             : std::nullopt;
      if (labels[n] && *labels[n] == info.label) {
        out.emplace(r, make_found(root, r, n, "label"));
        break;
      }
    }
  }
  return out;
}

std::map<DiskRole, FoundDisk> find_disks(const std::string& root, const std::vector<DiskRole>& roles,
                                         std::chrono::milliseconds wait, std::chrono::milliseconds poll,
                                         const std::vector<DiskRole>& optional) {
  std::vector<DiskRole> all = roles;
  all.insert(all.end(), optional.begin(), optional.end());
  auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    auto found = scan_disks(root, all);
    bool complete = true;
    for (DiskRole r : roles) complete = complete && found.count(r);
    if (complete || std::chrono::steady_clock::now() >= deadline) return found;
    std::this_thread::sleep_for(poll);
  }
}

}  // namespace sprout::agent
