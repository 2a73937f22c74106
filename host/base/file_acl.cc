#include "base/file_acl.h"

#include <sys/stat.h>
#include <sys/xattr.h>

#include <algorithm>
#include <optional>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

namespace sprout {

namespace {

constexpr const char* kAccessAcl = "system.posix_acl_access";
constexpr std::uint32_t kVersion = 2;
// Tags and the "no id" of <linux/posix_acl.h>, in the order entries must be stored.
constexpr std::uint16_t kUserObj = 0x01, kUser = 0x02, kGroupObj = 0x04, kGroup = 0x08, kMask = 0x10, kOther = 0x20;
constexpr std::uint32_t kNoId = 0xffffffffu;
constexpr std::uint16_t kRead = 4;

struct Entry {
  std::uint16_t tag;
  std::uint16_t perm;
  std::uint32_t id;
};

std::uint32_t le32(const unsigned char* p) {
  return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 | std::uint32_t(p[3]) << 24;
}
std::uint16_t le16(const unsigned char* p) { return static_cast<std::uint16_t>(p[0] | p[1] << 8); }
void put32(std::string& s, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
}
void put16(std::string& s, std::uint16_t v) {
  s += static_cast<char>(v & 0xff);
  s += static_cast<char>(v >> 8);
}

std::vector<Entry> parse(std::string_view xattr, mode_t mode) {
  std::vector<Entry> out;
  if (xattr.empty()) {
    out = {{kUserObj, static_cast<std::uint16_t>((mode >> 6) & 7), kNoId},
           {kGroupObj, static_cast<std::uint16_t>((mode >> 3) & 7), kNoId},
           {kOther, static_cast<std::uint16_t>(mode & 7), kNoId}};
    return out;
  }
  const auto* p = reinterpret_cast<const unsigned char*>(xattr.data());
  if (xattr.size() < 4 || (xattr.size() - 4) % 8 != 0 || le32(p) != kVersion)
    throw std::invalid_argument("not a version 2 POSIX ACL");
  for (std::size_t at = 4; at < xattr.size(); at += 8) out.push_back({le16(p + at), le16(p + at + 2), le32(p + at + 4)});
  return out;
}

std::string encode(std::vector<Entry> entries) {
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.tag != b.tag ? a.tag < b.tag : a.id < b.id; });
  std::string s;
  put32(s, kVersion);
  for (const auto& e : entries) {
    put16(s, e.tag);
    put16(s, e.perm);
    put32(s, e.id);
  }
  return s;
}

void write_acl(int fd, const std::filesystem::path& what, uid_t uid, bool readable) {
  struct stat st {};
  if (::fstat(fd, &st) != 0)
    throw std::runtime_error(fmt::format("{}: cannot stat: {}", what.string(), std::strerror(errno)));
  const std::string now = read_access_acl(fd, what);
  bool has_entry = false;
  for (const auto& e : parse(now, st.st_mode))
    if (e.tag == kUser && e.id == uid) has_entry = true;
  if (readable ? acl_names_user(now, uid) : !has_entry) return;  // nothing to change
  const std::string want = acl_with_user(now, st.st_mode, uid, readable);
  if (::fsetxattr(fd, kAccessAcl, want.data(), want.size(), 0) != 0)
    throw std::runtime_error(fmt::format(
        "{}: cannot {} uid {} in its ACL: {}{}", what.string(), readable ? "let read" : "remove", uid,
        std::strerror(errno),
        errno == EOPNOTSUPP ? " (its file system takes no POSIX ACLs: ext4, xfs, btrfs and tmpfs have them by "
                              "default; ZFS needs `zfs set acltype=posixacl DATASET`)"
                            : ""));
}

}  // namespace

std::string acl_with_user(std::string_view xattr, mode_t mode, uid_t uid, bool readable) {
  std::vector<Entry> entries;
  std::optional<std::uint16_t> old_mask;  // never widened: it bounds the others' entries
  for (const auto& e : parse(xattr, mode)) {
    if (e.tag == kMask) old_mask = e.perm;
    if (e.tag != kMask && !(e.tag == kUser && e.id == uid)) entries.push_back(e);
  }
  if (readable) entries.push_back({kUser, kRead, uid});
  std::uint16_t mask = 0;
  bool extended = false;
  for (const auto& e : entries) {
    if (e.tag == kUser || e.tag == kGroup) extended = true;
    if (e.tag == kUser || e.tag == kGroup || e.tag == kGroupObj) mask |= e.perm;
  }
  if (old_mask) mask = static_cast<std::uint16_t>(*old_mask | (readable ? kRead : 0));
  if (extended) entries.push_back({kMask, mask, kNoId});
  return encode(std::move(entries));
}

bool acl_names_user(std::string_view xattr, uid_t uid) {
  if (xattr.empty()) return false;
  std::uint16_t mask = 7;
  bool named = false;
  for (const auto& e : parse(xattr, 0)) {
    if (e.tag == kMask) mask = e.perm;
    if (e.tag == kUser && e.id == uid && (e.perm & kRead)) named = true;
  }
  return named && (mask & kRead);
}

std::string read_access_acl(int fd, const std::filesystem::path& what) {
  std::string buf(4 + 8 * 64, '\0');
  for (;;) {
    const ssize_t n = ::fgetxattr(fd, kAccessAcl, buf.data(), buf.size());
    if (n >= 0) return buf.substr(0, static_cast<std::size_t>(n));
    if (errno == ENODATA || errno == EOPNOTSUPP) return "";
    if (errno != ERANGE)
      throw std::runtime_error(fmt::format("{}: cannot read its ACL: {}", what.string(), std::strerror(errno)));
    buf.resize(buf.size() * 4);
  }
}

void grant_read(int fd, const std::filesystem::path& what, uid_t uid) { write_acl(fd, what, uid, true); }

void revoke(int fd, const std::filesystem::path& what, uid_t uid) { write_acl(fd, what, uid, false); }

}  // namespace sprout
