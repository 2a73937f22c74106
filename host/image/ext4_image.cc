#include "image/ext4_image.h"

#include <ext2fs/ext2fs.h>

#include <chrono>
#include <string>
#include <string_view>
#include <stdexcept>
#include <optional>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "image/memory_image.h"
#include "subprocess.h"
#include "image/tree.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {
constexpr std::uint64_t kBlock = 4096;
constexpr std::uint64_t kMiB = 1 << 20;

std::uint64_t round_up(std::uint64_t v, std::uint64_t to) { return (v + to - 1) / to * to; }

[[noreturn]] void ext2_fail(errcode_t err, const std::string& what, const fs::path& image) {
  throw std::runtime_error(fmt::format("{}: {}: {}", image.string(), what, error_message(err)));
}
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

TreeSize measure_tree(const fs::path& dir) {
  TreeSize t;
  walk_tree(dir, [&](const TreeEntry& e) { account_entry(t, e); });
  return t;
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

void normalize_ext4_image(const fs::path& image) {
  ext2_filsys fs = nullptr;
  errcode_t err = ext2fs_open(image.c_str(), EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs);
  if (err) ext2_fail(err, "cannot open the new image with libext2fs", image);
  try {
    if ((err = ext2fs_read_bitmaps(fs))) ext2_fail(err, "cannot read bitmaps", image);
    std::vector<ext2_ino_t> used;
    ext2_inode_scan scan = nullptr;
    if ((err = ext2fs_open_inode_scan(fs, 0, &scan))) ext2_fail(err, "cannot scan inodes", image);
    ext2_ino_t ino = 0;
    ext2_inode inode{};
    while (!(err = ext2fs_get_next_inode(scan, &ino, &inode)) && ino != 0)
      if (inode.i_links_count > 0) used.push_back(ino);
    ext2fs_close_inode_scan(scan);
    if (err) ext2_fail(err, "inode scan failed", image);

    // mkfs.ext4 -d copies extended attributes, which are not part of a tree's digest
    // (nor of what sprout exports): strip them all, but inline data's system.data.
    for (ext2_ino_t i : used) {
      ext2_xattr_handle* h = nullptr;
      if ((err = ext2fs_xattrs_open(fs, i, &h))) ext2_fail(err, "cannot open extended attributes", image);
      std::vector<std::string> keys;
      err = ext2fs_xattrs_read(h);
      if (!err)
        err = ext2fs_xattrs_iterate(
            h,
            [](char* name, char*, size_t, void* data) {
              if (std::string_view(name) != "system.data") static_cast<std::vector<std::string>*>(data)->push_back(name);
              return 0;
            },
            &keys);
      for (const auto& k : keys)
        if (!err) err = ext2fs_xattr_remove(h, k.c_str());
      errcode_t close_err = ext2fs_xattrs_close(&h);
      if (err || close_err) ext2_fail(err ? err : close_err, "cannot strip extended attributes", image);
    }

    const int size = EXT2_INODE_SIZE(fs->super);
    std::vector<char> buf(static_cast<std::size_t>(size));
    auto* large = reinterpret_cast<ext2_inode_large*>(buf.data());
    for (ext2_ino_t i : used) {
      if ((err = ext2fs_read_inode_full(fs, i, reinterpret_cast<ext2_inode*>(large), size)))
        ext2_fail(err, "cannot read an inode", image);
      large->i_atime = large->i_mtime = large->i_ctime = kExportTimestamp;
      large->i_uid = large->i_gid = 0;
      large->osd2.linux2.l_i_uid_high = large->osd2.linux2.l_i_gid_high = 0;
      if (size > EXT2_GOOD_OLD_INODE_SIZE && large->i_extra_isize >= 24) {
        large->i_atime_extra = large->i_mtime_extra = large->i_ctime_extra = 0;
        large->i_crtime = kExportTimestamp;
        large->i_crtime_extra = 0;
      }
      if ((err = ext2fs_write_inode_full(fs, i, reinterpret_cast<ext2_inode*>(large), size)))
        ext2_fail(err, "cannot write an inode", image);
    }
    fs->super->s_wtime = fs->super->s_mtime = fs->super->s_lastcheck = fs->super->s_mkfs_time = kExportTimestamp;
    fs->now = kExportTimestamp;
    ext2fs_mark_super_dirty(fs);
  } catch (...) {
    ext2fs_close_free(&fs);
    throw;
  }
  // No fsync here: the image is a temporary file that its committer fsyncs before it
  // is renamed into place (PendingFile::commit).
  if ((err = ext2fs_close2(fs, EXT2_FLAG_FLUSH_NO_SYNC))) {
    ext2fs_free(fs);
    ext2_fail(err, "cannot write the image", image);
  }
}

void build_ext4_image(const fs::path& dir, const std::string& label, const std::string& seed_hex,
                      const fs::path& out) {
  using Clock = std::chrono::steady_clock;
  auto ms_since = [](Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  };
  auto t0 = Clock::now();
  TreeSize t = measure_tree(dir);
  spdlog::debug("{}: measured in {:.0f} ms", dir.string(), ms_since(t0));
  std::uint64_t size = image_size_for(t);
  std::uint64_t inodes = t.files + t.dirs + t.symlinks + 64;
  std::string uuid = uuid_from_hex(seed_hex);
  // Small images are made in memory, where mkfs.ext4's fsyncs cost nothing, and then
  // written to `out` once; big ones where they will stay (no second copy in memory).
  std::optional<MemoryImage> memory;
  if (size <= kMemoryImageMax) memory.emplace();
  const fs::path target = memory ? memory->path() : out;
  ProcessOptions o;
  o.argv = {"mkfs.ext4",
            "-q",
            "-F",
            "-T", "default",  // same inode ratio and features whatever the size
            "-O", "^has_journal",
            "-b", "4096",
            "-I", "256",
            "-N", std::to_string(inodes),
            "-m", "0",
            "-L", label,
            "-U", uuid,
            "-E", fmt::format("root_owner=0:0,hash_seed={},nodiscard", uuid),
            "-d", dir.string(),
            target.string(),
            std::to_string(size / 1024) + "k"};
  o.env = {{"E2FSPROGS_FAKE_TIME", std::to_string(kExportTimestamp)}};
  o.timeout = std::chrono::minutes(30);
  t0 = Clock::now();
  auto r = run_process(o);
  spdlog::debug("{}: mkfs.ext4 took {:.0f} ms", dir.string(), ms_since(t0));
  if (!r.ok()) {
    std::string tail;
    for (const auto& l : r.last_lines(10)) tail += "\n  " + l;
    if (!r.started)
      throw std::runtime_error(fmt::format("cannot run mkfs.ext4 ({}); install e2fsprogs", r.error));
    throw std::runtime_error(fmt::format("mkfs.ext4 for {} {}{}", dir.string(), r.describe(), tail));
  }
  t0 = Clock::now();
  normalize_ext4_image(target);
  spdlog::debug("{}: normalized in {:.0f} ms", out.string(), ms_since(t0));
  if (memory) {
    t0 = Clock::now();
    std::error_code ec;
    fs::remove(out, ec);  // callers pass a temporary path: replace what is there
    std::uint64_t written = memory->write_to(out);
    spdlog::debug("{}: {} KiB of {} KiB written from memory in {:.0f} ms", out.string(), written >> 10, size >> 10,
                  ms_since(t0));
  }
}

}  // namespace sprout
