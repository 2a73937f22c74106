#include "image/ext4_image.h"

#include <string>
#include <string_view>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "image/tree.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {
constexpr std::uint64_t kBlock = 4096;
constexpr std::uint64_t kMiB = 1 << 20;

std::uint64_t round_up(std::uint64_t v, std::uint64_t to) { return (v + to - 1) / to * to; }

}  // namespace

std::string uuid_from_hex(const std::string& hex) {
  if (hex.size() < 32) throw std::invalid_argument("uuid_from_hex: need 32 hex digits");
  std::string h = hex.substr(0, 32);
  h[12] = '4';                                                          // version 4 layout
  h[16] = "89ab"[std::stoi(std::string(1, h[16]), nullptr, 16) & 3];   // RFC 4122 variant
  return fmt::format("{}-{}-{}-{}-{}", h.substr(0, 8), h.substr(8, 4), h.substr(12, 4), h.substr(16, 4),
                     h.substr(20, 12));
}

void account_entry(TreeSize& t, const TreeEntry& e) {
  if (S_ISDIR(e.st.st_mode)) {
    ++t.dirs;
  } else if (S_ISLNK(e.st.st_mode)) {
    ++t.symlinks;
    if (e.link_target.size() >= 60) t.data_bytes += kBlock;  // not a fast symlink
  } else {
    ++t.files;
    t.data_bytes += round_up(static_cast<std::uint64_t>(e.st.st_size), kBlock);
  }
}

std::uint64_t image_size_for(const TreeSize& t) {
  std::uint64_t inodes = t.files + t.dirs + t.symlinks + 64;
  // Directory blocks (one each, more for big directories), inode table (256 bytes an
  // inode), extent blocks for big files, then a 10% margin and 4 MiB for the fixed
  // metadata (superblock copies, group descriptors, bitmaps).
  std::uint64_t bytes = t.data_bytes + t.dirs * kBlock + inodes * 256 + inodes * 64 + t.data_bytes / 256;
  std::uint64_t total = bytes + bytes / 10 + 4 * kMiB;
  return std::max<std::uint64_t>(round_up(total, kMiB), 8 * kMiB);
}

}  // namespace sprout
