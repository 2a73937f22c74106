#include "image/ext4_writer.h"

#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

#include "error.h"
#include "image/listed_tree.h"
#include "image/listed_tree_stream.h"
#include "image/memory_image.h"
#include "image/tree_digest.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

constexpr std::size_t kBlock = 4096;

/// The 16 bytes of the UUID uuid_from_hex makes of `hex`.
void uuid_bytes(const std::string& hex, unsigned char out[16]) {
  std::string u = uuid_from_hex(hex);
  std::string digits;
  for (char c : u)
    if (c != '-') digits += c;
  for (int i = 0; i < 16; ++i) out[i] = static_cast<unsigned char>(std::stoi(digits.substr(2 * i, 2), nullptr, 16));
}

/// What mkfs.ext4 -T default -O ^has_journal -b 4096 -I 256 -m 0 sets for an image
/// of `bytes`, without the resize inode (a read-only image never grows).
ext2_super_block superblock_parameters(std::uint64_t bytes, const TreeSize& size) {
  ext2_super_block param{};
  ext2fs_blocks_count_set(&param, bytes / kBlock);
  param.s_log_block_size = 2;  // 1024 << 2
  param.s_rev_level = EXT2_DYNAMIC_REV;
  param.s_inode_size = 256;
  param.s_inodes_count = static_cast<__u32>(size.files + size.dirs + size.symlinks + 64);
  param.s_desc_size = EXT2_MIN_DESC_SIZE_64BIT;
  param.s_log_groups_per_flex = 4;
  ext2fs_set_feature_xattr(&param);
  ext2fs_set_feature_dir_index(&param);
  ext2fs_set_feature_sparse_super(&param);
  ext2fs_set_feature_large_file(&param);
  ext2fs_set_feature_filetype(&param);
  ext2fs_set_feature_extents(&param);
  ext2fs_set_feature_huge_file(&param);
  ext2fs_set_feature_flex_bg(&param);
  ext2fs_set_feature_metadata_csum(&param);
  ext2fs_set_feature_64bit(&param);
  ext2fs_set_feature_dir_nlink(&param);
  ext2fs_set_feature_extra_isize(&param);
  return param;
}

}  // namespace

struct Ext4Writer::State {
  fs::path out;
  std::optional<MemoryImage> memory;
  ext2_filsys fs = nullptr;
  std::vector<char> block = std::vector<char>(kBlock);  ///< FileData's partial block
  ext2_ino_t lost_found = 0;
  std::map<ext2_ino_t, std::uint64_t> subdirs;  ///< directories made in each directory

  ~State() {
    if (fs) ext2fs_free(fs);
  }

  [[noreturn]] void fail(errcode_t err, const std::string& what) const {
    throw std::runtime_error(fmt::format("{}: {}: {}", out.string(), what, error_message(err)));
  }
  void check(errcode_t err, const std::string& what) const {
    if (err) fail(err, what);
  }

  /// The file the filesystem is laid out in, `bytes` long: in memory when the image
  /// is small enough (`memory`), else `out` itself.
  fs::path sized_target(std::uint64_t bytes) {
    fs::path target = out;
    if (bytes <= kMemoryImageMax) {
      memory.emplace();
      target = memory->path();
    } else {
      int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0) throw std::system_error(errno, std::generic_category(), out.string());
      int rc = ::ftruncate(fd, static_cast<off_t>(bytes));
      int saved = errno;
      ::close(fd);
      if (rc != 0) throw std::system_error(saved, std::generic_category(), out.string());
    }
    if (memory && ::truncate(target.c_str(), static_cast<off_t>(bytes)) != 0)
      throw std::system_error(errno, std::generic_category(), "sizing the in-memory image");
    return target;
  }

  /// The superblock's fields that would follow the clock, the host or chance, fixed:
  /// times, UUID and hash seed (from `seed_hex`), hash and checksum kinds; and its label.
  void settle_superblock(const std::string& label, const std::string& seed_hex) {
    fs->now = kExportTimestamp;
    auto* sb = fs->super;
    sb->s_mkfs_time = sb->s_lastcheck = sb->s_wtime = sb->s_mtime = kExportTimestamp;
    sb->s_max_mnt_count = static_cast<__s16>(-1);
    // Zero, so that closing adds no I/O statistics (they would follow how the writes
    // were split); and the directory hash's signedness fixed, not the host's char's.
    sb->s_kbytes_written = 0;
    sb->s_flags &= ~(EXT2_FLAGS_SIGNED_HASH | EXT2_FLAGS_UNSIGNED_HASH);
    sb->s_flags |= EXT2_FLAGS_SIGNED_HASH;
    uuid_bytes(seed_hex, sb->s_uuid);
    std::memcpy(sb->s_hash_seed, sb->s_uuid, sizeof sb->s_uuid);
    sb->s_def_hash_version = EXT2_HASH_HALF_MD4;
    sb->s_checksum_type = EXT2_CRC32C_CHKSUM;
    ext2fs_init_csum_seed(fs);
    std::memset(sb->s_volume_name, 0, sizeof sb->s_volume_name);
    std::strncpy(reinterpret_cast<char*>(sb->s_volume_name), label.c_str(), sizeof sb->s_volume_name);
  }

  /// The block groups' tables, bitmaps and descriptors, and the reserved inodes.
  void set_up_groups() {
    auto* sb = fs->super;
    check(ext2fs_allocate_tables(fs), "cannot allocate the group tables");
    check(ext2fs_convert_subcluster_bitmap(fs, &fs->block_map), "cannot set up the block bitmap");
    blk64_t overhead = 0;
    check(ext2fs_count_used_clusters(fs, sb->s_first_data_block, ext2fs_blocks_count(sb) - 1, &overhead),
          "cannot count the metadata blocks");
    sb->s_overhead_clusters = static_cast<__u32>(overhead + sb->s_first_data_block);
    // The file is new and reads as zeros: the inode tables are zeroed already.
    for (dgrp_t g = 0; g < fs->group_desc_count; ++g) {
      ext2fs_bg_flags_set(fs, g, EXT2_BG_INODE_ZEROED);
      ext2fs_group_desc_csum_set(fs, g);
    }
    // Reserved inodes must have valid checksums (mke2fs's write_reserved_inodes).
    std::vector<char> zero(EXT2_INODE_SIZE(sb));
    for (ext2_ino_t ino = 1; ino < EXT2_FIRST_INO(sb); ++ino)
      check(ext2fs_write_inode_full(fs, ino, reinterpret_cast<ext2_inode*>(zero.data()), EXT2_INODE_SIZE(sb)),
            "cannot write the reserved inodes");
  }

  /// The root directory and lost+found (16 KiB, as mkfs.ext4 makes it).
  void make_root_directories() {
    check(ext2fs_mkdir(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, nullptr), "cannot create the root directory");
    fs->umask = 077;
    check(ext2fs_mkdir(fs, EXT2_ROOT_INO, 0, "lost+found"), "cannot create lost+found");
    check(ext2fs_lookup(fs, EXT2_ROOT_INO, "lost+found", 10, nullptr, &lost_found), "cannot find lost+found");
    for (std::size_t bytes_now = kBlock; bytes_now < 16 * 1024; bytes_now += kBlock)
      check(ext2fs_expand_dir(fs, lost_found), "cannot grow lost+found");
  }

  /// Marks the reserved inodes in use, and writes the bad block inode.
  void reserve_inodes() {
    for (ext2_ino_t ino = EXT2_ROOT_INO + 1; ino < EXT2_FIRST_INODE(fs->super); ++ino)
      ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
    ext2fs_mark_ib_dirty(fs);
    ext2fs_mark_inode_bitmap2(fs->inode_map, EXT2_BAD_INO);
    ext2fs_inode_alloc_stats2(fs, EXT2_BAD_INO, +1, 0);
    check(ext2fs_update_bb_inode(fs, nullptr), "cannot write the bad block inode");
  }

  /// Runs `op` (which links a name into `dir`), growing the directory by a block when
  /// it is full.
  template <typename Op>
  void into_directory(ext2_ino_t dir, const std::string& name, Op op) {
    errcode_t err = op();
    if (err == EXT2_ET_DIR_NO_SPACE) {
      check(ext2fs_expand_dir(fs, dir), "cannot grow the directory of " + name);
      err = op();
    }
    if (err == EXT2_ET_DIR_EXISTS || err == EXT2_ET_FILE_EXISTS)
      throw InputError(fmt::format("{}: two entries are named {} in one directory", out.string(), name));
    check(err, "cannot create " + name);
  }

  ext2_ino_t new_inode(ext2_ino_t dir, unsigned mode) {
    ext2_ino_t ino = 0;
    check(ext2fs_new_inode(fs, dir, static_cast<int>(mode), nullptr, &ino), "no free inode");
    return ino;
  }

  ext2_ino_t make_directory(ext2_ino_t parent, const std::string& name, unsigned mode) {
    ext2_ino_t ino = new_inode(parent, LINUX_S_IFDIR | 0755);
    fs->umask = ~mode & 0777;
    into_directory(parent, name, [&] { return ext2fs_mkdir(fs, parent, ino, name.c_str()); });
    if (mode & 07000) set_mode(ino, LINUX_S_IFDIR | (mode & 07777));
    ++subdirs[parent];
    return ino;
  }

  void set_mode(ext2_ino_t ino, unsigned mode) {
    ext2_inode inode;
    check(ext2fs_read_inode(fs, ino, &inode), "cannot read an inode");
    inode.i_mode = static_cast<__u16>(mode);
    check(ext2fs_write_inode(fs, ino, &inode), "cannot write an inode");
  }

  void link_again(ext2_ino_t dir, const std::string& name, ext2_ino_t ino) {
    into_directory(dir, name, [&] { return ext2fs_link(fs, dir, name.c_str(), ino, EXT2_FT_REG_FILE); });
    ext2_inode inode;
    check(ext2fs_read_inode(fs, ino, &inode), "cannot read an inode");
    if (inode.i_links_count >= EXT2_LINK_MAX)
      throw InputError(fmt::format("{}: more than {} hard links to one file; ext4 allows no more", name,
                                   EXT2_LINK_MAX));
    ++inode.i_links_count;
    check(ext2fs_write_inode(fs, ino, &inode), "cannot write an inode");
  }

  /// A directory with more subdirectories than a link count holds gets the count 1,
  /// as the kernel and e2fsck do under dir_nlink (ext2fs_mkdir only adds one).
  void cap_directory_links() {
    for (auto [dir, n] : subdirs) {
      if (n + 2 < EXT2_LINK_MAX) continue;
      ext2_inode inode;
      check(ext2fs_read_inode(fs, dir, &inode), "cannot read an inode");
      inode.i_links_count = 1;
      check(ext2fs_write_inode(fs, dir, &inode), "cannot write an inode");
    }
  }

  /// A regular file of `size` bytes whose blocks are allocated (in extents, as few as
  /// the free space allows) and returned as (logical, physical, length) runs.
  struct Run {
    blk64_t lblk, pblk, len;
  };
  ext2_ino_t new_file(ext2_ino_t dir, const std::string& name, unsigned mode, std::uint64_t size,
                      std::vector<Run>& runs) {
    ext2_ino_t ino = new_inode(dir, LINUX_S_IFREG | 0600);
    into_directory(dir, name, [&] { return ext2fs_link(fs, dir, name.c_str(), ino, EXT2_FT_REG_FILE); });
    ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
    ext2_inode inode{};
    inode.i_mode = static_cast<__u16>(LINUX_S_IFREG | (mode & 07777));
    inode.i_links_count = 1;
    check(ext2fs_inode_size_set(fs, &inode, size), "cannot set the size of " + name);
    ext2_extent_handle_t handle = nullptr;
    check(ext2fs_extent_open2(fs, ino, &inode, &handle), "cannot start the extents of " + name);
    ext2fs_extent_free(handle);
    check(ext2fs_write_new_inode(fs, ino, &inode), "cannot write the inode of " + name);
    runs.clear();
    blk64_t blocks = (size + kBlock - 1) / kBlock;
    if (blocks == 0) return ino;
    check(ext2fs_fallocate(fs, EXT2_FALLOCATE_FORCE_INIT, ino, nullptr, ~0ULL, 0, blocks),
          "no room for " + name + " in the image");
    check(ext2fs_extent_open(fs, ino, &handle), "cannot read the extents of " + name);
    ext2fs_extent extent;
    errcode_t err = ext2fs_extent_get(handle, EXT2_EXTENT_ROOT, &extent);
    while (!err) {
      if (extent.e_flags & EXT2_EXTENT_FLAGS_LEAF) runs.push_back({extent.e_lblk, extent.e_pblk, extent.e_len});
      err = ext2fs_extent_get(handle, EXT2_EXTENT_NEXT_LEAF, &extent);
    }
    ext2fs_extent_free(handle);
    if (err != EXT2_ET_EXTENT_NO_NEXT) fail(err, "cannot read the extents of " + name);
    blk64_t covered = 0;
    for (const auto& r : runs) covered += r.len;
    if (covered != blocks) throw std::logic_error(fmt::format("{}: {} of {} blocks allocated", name, covered, blocks));
    return ino;
  }

  /// Streams one file's bytes into the blocks allocated for it, in order, whatever
  /// size the chunks come in: whole blocks go straight from the caller's buffer to
  /// the image, a partial one waits in `block` until it fills or the file ends.
  struct FileData {
    State& s;
    const std::vector<Run>& runs;
    blk64_t next = 0;       ///< the file's next logical block
    std::size_t run = 0;    ///< the run holding it
    std::size_t held = 0;   ///< bytes waiting in s.block

    void add(const char* data, std::size_t n) {
      if (held > 0) {
        std::size_t take = std::min(n, kBlock - held);
        std::memcpy(s.block.data() + held, data, take);
        held += take;
        data += take;
        n -= take;
        if (held < kBlock) return;
        write(s.block.data(), 1);
        held = 0;
      }
      if (std::size_t full = n / kBlock) {
        write(data, full);
        data += full * kBlock;
        n -= full * kBlock;
      }
      if (n > 0) {
        std::memcpy(s.block.data(), data, n);
        held = n;
      }
    }
    /// Writes the last partial block, zero-padded.
    void finish() {
      if (held == 0) return;
      std::memset(s.block.data() + held, 0, kBlock - held);
      write(s.block.data(), 1);
      held = 0;
    }

   private:
    void write(const char* data, blk64_t count) {
      while (count > 0) {
        while (!(runs.at(run).lblk <= next && next < runs[run].lblk + runs[run].len)) ++run;
        blk64_t n = std::min<blk64_t>(count, runs[run].lblk + runs[run].len - next);
        s.check(io_channel_write_blk64(s.fs->io, runs[run].pblk + (next - runs[run].lblk), static_cast<int>(n), data),
                "cannot write file data");
        data += n * kBlock;
        next += n;
        count -= n;
      }
    }
  };
};

Ext4Writer::Ext4Writer(const fs::path& out, const std::string& label, const std::string& seed_hex,
                       const TreeSize& size)
    : s_(std::make_unique<State>()) {
  State& s = *s_;
  s.out = out;
  const std::uint64_t bytes = image_size_for(size);
  const fs::path target = s.sized_target(bytes);
  ext2_super_block param = superblock_parameters(bytes, size);
  s.check(ext2fs_initialize(target.c_str(), EXT2_FLAG_64BITS, &param, unix_io_manager, &s.fs),
          "cannot lay out the filesystem");
  s.settle_superblock(label, seed_hex);
  s.set_up_groups();
  s.make_root_directories();
  s.reserve_inodes();
}

Ext4Writer::~Ext4Writer() = default;

std::map<std::string, std::string> Ext4Writer::add_listing(const TreeListing& listing) {
  State& s = *s_;
  std::map<std::string, std::string> hashes;
  if (listing.entries.empty()) return hashes;
  s.set_mode(EXT2_ROOT_INO, LINUX_S_IFDIR | (listing.entries[0].st.st_mode & 07777));
  auto groups = hard_link_groups(listing);
  std::vector<bool> read(listing.entries.size(), false);
  for (std::size_t i = 1; i < listing.entries.size(); ++i)
    read[i] = S_ISREG(listing.entries[i].st.st_mode) && (groups[i] < 0 || static_cast<std::size_t>(groups[i]) == i);
  ListedTreeStream stream(listing, read);
  std::map<std::string, ext2_ino_t> dirs{{"", EXT2_ROOT_INO}};
  std::vector<ext2_ino_t> inodes(listing.entries.size(), 0);
  std::vector<State::Run> runs;
  for (std::size_t i = 1; i < listing.entries.size(); ++i) {
    const TreeEntry& e = listing.entries[i];
    ext2_ino_t dir = dirs.at(parent_of(e.rel));
    std::string name = name_of(e.rel);
    const unsigned mode = e.st.st_mode & 07777;
    if (dir == EXT2_ROOT_INO && name == "lost+found") {
      // The tree has its own (a copy of an ext4 root, say): its entries go into the
      // filesystem's, as with mkfs.ext4 -d; anything else may not take that name.
      if (!S_ISDIR(e.st.st_mode))
        throw InputError(fmt::format("{}: lost+found is a directory the filesystem needs; rename this one",
                                     e.abs));
      dirs[e.rel] = s.lost_found;
      s.set_mode(s.lost_found, LINUX_S_IFDIR | mode);
    } else if (S_ISDIR(e.st.st_mode)) {
      dirs[e.rel] = s.make_directory(dir, name, mode);
    } else if (S_ISLNK(e.st.st_mode)) {
      s.into_directory(dir, name,
                       [&] { return ext2fs_symlink(s.fs, dir, 0, name.c_str(), e.link_target.c_str()); });
    } else if (!read[i]) {
      auto first = static_cast<std::size_t>(groups[i]);
      s.link_again(dir, name, inodes[first]);
      hashes[e.rel] = hashes.at(listing.entries[first].rel);
    } else {
      const auto size = static_cast<std::uint64_t>(e.st.st_size);
      inodes[i] = s.new_file(dir, name, mode, size, runs);
      State::FileData out{s, runs};
      for (;;) {
        ListedTreeStream::Chunk c = stream.next();
        if (c.entry != i) throw std::logic_error("listed tree stream out of order at " + e.rel);
        out.add(c.data.data(), c.data.size());
        if (c.last) {
          hashes[e.rel] = std::move(c.hash);
          break;
        }
      }
      out.finish();
    }
  }
  return hashes;
}

void Ext4Writer::add_file(const std::string& path, std::string_view bytes, unsigned mode) {
  State& s = *s_;
  ext2_ino_t dir = EXT2_ROOT_INO;
  const std::string parent = parent_of(path), name = name_of(path);
  if (!parent.empty())
    s.check(ext2fs_namei(s.fs, EXT2_ROOT_INO, EXT2_ROOT_INO, parent.c_str(), &dir), "cannot find the directory " + parent);
  ext2_ino_t existing = 0;
  if (ext2fs_lookup(s.fs, dir, name.c_str(), static_cast<int>(name.size()), nullptr, &existing) == 0)
    throw InputError(fmt::format("the exported tree contains {}, a name sprout reserves; rename it", path));
  std::vector<State::Run> runs;
  s.new_file(dir, name, mode, bytes.size(), runs);
  State::FileData out{s, runs};
  out.add(bytes.data(), bytes.size());
  out.finish();
}

void Ext4Writer::set_root_mode(unsigned mode) { s_->set_mode(EXT2_ROOT_INO, LINUX_S_IFDIR | (mode & 07777)); }

void Ext4Writer::add_directory(const std::string& name, unsigned mode) {
  State& s = *s_;
  ext2_ino_t existing = 0;
  if (ext2fs_lookup(s.fs, EXT2_ROOT_INO, name.c_str(), static_cast<int>(name.size()), nullptr, &existing) == 0)
    throw InputError(fmt::format("the exported tree contains {}, a name sprout reserves; rename it", name));
  s.make_directory(EXT2_ROOT_INO, name, mode);
}

void Ext4Writer::add_streamed_file(const std::string& rel, unsigned mode, std::uint64_t size,
                                   const std::function<void(const Sink&)>& fill) {
  State& s = *s_;
  ext2_ino_t dir = EXT2_ROOT_INO;
  std::string parent = parent_of(rel), name = name_of(rel);
  if (!parent.empty()) s.check(ext2fs_namei(s.fs, EXT2_ROOT_INO, EXT2_ROOT_INO, parent.c_str(), &dir),
                               "cannot find the directory " + parent);
  std::vector<State::Run> runs;
  s.new_file(dir, name, mode, size, runs);
  State::FileData out{s, runs};
  std::uint64_t got = 0;
  fill([&](const char* data, std::size_t n) {
    got += n;
    if (got > size)
      throw std::runtime_error(fmt::format("{}: {} in the image: more than the {} bytes announced", s.out.string(),
                                           rel, size));
    out.add(data, n);
  });
  if (got != size)
    throw std::runtime_error(fmt::format("{}: {} in the image: {} bytes, not the {} announced", s.out.string(), rel,
                                         got, size));
  out.finish();
}

void Ext4Writer::ensure_directories(const std::vector<std::string>& paths) {
  State& s = *s_;
  for (const auto& path : paths) {
    ext2_ino_t dir = EXT2_ROOT_INO;
    std::string done;
    for (const auto& part : fs::path(path)) {
      std::string name = part.string();
      done += (done.empty() ? "" : "/") + name;
      ext2_ino_t child = 0;
      errcode_t err = ext2fs_lookup(s.fs, dir, name.c_str(), static_cast<int>(name.size()), nullptr, &child);
      if (err == EXT2_ET_FILE_NOT_FOUND) {
        child = s.make_directory(dir, name, 0755);
      } else if (err) {
        s.fail(err, "cannot look up /" + done);
      } else if (ext2fs_check_directory(s.fs, child) != 0) {
        throw InputError(fmt::format("the exported tree has {} as something other than a directory, but the guest "
                                     "mounts another disk there: make it a directory",
                                     done));
      }
      dir = child;
    }
  }
}

void Ext4Writer::finish() {
  State& s = *s_;
  s.cap_directory_links();
  // No fsync: the image is a temporary file its committer fsyncs before the rename.
  errcode_t err = ext2fs_close2(s.fs, EXT2_FLAG_FLUSH_NO_SYNC);
  if (err) s.fail(err, "cannot write the image");
  s.fs = nullptr;
  if (s.memory) {
    std::error_code ec;
    fs::remove(s.out, ec);  // a temporary path: replace what is there
    s.memory->write_to(s.out);
  }
}

}  // namespace sprout
