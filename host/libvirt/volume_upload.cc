#include "libvirt/volume_upload.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/sha256.h"
#include "libvirt/libvirt_api.h"
#include "libvirt/libvirt_domain_xml.h"
#include "libvirt/volume_names.h"

namespace sprout {

namespace {

const LibvirtApi& lv() { return libvirt_api(); }

struct Source {
  int fd = -1;
  Sha256 hash;              // of what the stream carried, holes as zeros
  std::uint64_t covered = 0;  // bytes of the file the stream covered (data and holes)
  std::uint64_t carried = 0;
  std::uint64_t pause_after = 0;  // 0: never
  unsigned pause_seconds = 60;
  bool paused = false;
  int error = 0;  // errno of a failed read or seek, for the message
};

// The stream's data: read() at the current offset.
int send_data(virStreamPtr, char* data, size_t nbytes, void* opaque) {
  auto* s = static_cast<Source*>(opaque);
  ssize_t n;
  do n = ::read(s->fd, data, nbytes);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    s->error = errno;
    return -1;
  }
  s->carried += static_cast<std::uint64_t>(n);
  s->covered += static_cast<std::uint64_t>(n);
  s->hash.update(data, static_cast<std::size_t>(n));
  if (s->pause_after && !s->paused && s->carried >= s->pause_after) {
    s->paused = true;
    fmt::print(stderr, "upload paused after {} bytes\n", s->carried);
    std::fflush(stderr);
    std::this_thread::sleep_for(std::chrono::seconds(s->pause_seconds));
  }
  return static_cast<int>(n);
}

// Where the current offset is: in data (and how much follows) or in a hole (and how
// long it is; at the end of the file, a hole of length 0). libvirt's virFileInData.
int in_data(virStreamPtr, int* in, long long* length, void* opaque) {
  auto* s = static_cast<Source*>(opaque);
  const off_t cur = ::lseek(s->fd, 0, SEEK_CUR);
  if (cur < 0) return s->error = errno, -1;
  const off_t data = ::lseek(s->fd, cur, SEEK_DATA);
  if (data < 0) {
    if (errno != ENXIO) return s->error = errno, -1;
    const off_t end = ::lseek(s->fd, 0, SEEK_END);  // no data after cur: a hole to the end
    if (end < 0) return s->error = errno, -1;
    *in = 0;
    *length = end - cur;
  } else if (data > cur) {
    *in = 0;
    *length = data - cur;
  } else {
    const off_t hole = ::lseek(s->fd, cur, SEEK_HOLE);  // every file ends in an implicit hole
    if (hole < 0) return s->error = errno, -1;
    *in = 1;
    *length = hole - cur;
  }
  if (::lseek(s->fd, cur, SEEK_SET) < 0) return s->error = errno, -1;
  return 0;
}

// A hole the stream sent as its length: skip it in the file.
int skip_hole(virStreamPtr, long long length, void* opaque) {
  auto* s = static_cast<Source*>(opaque);
  if (::lseek(s->fd, length, SEEK_CUR) < 0) return s->error = errno, -1;
  static const std::string zeros(1 << 16, '\0');
  for (long long left = length; left > 0;) {
    const std::size_t n = static_cast<std::size_t>(std::min<long long>(left, static_cast<long long>(zeros.size())));
    s->hash.update(zeros.data(), n);
    left -= static_cast<long long>(n);
  }
  s->covered += static_cast<std::uint64_t>(length);
  return 0;
}

std::string empty_volume_xml(const std::string& name, std::uint64_t capacity, unsigned mode) {
  return fmt::format(
      "<volume>\n  <name>{}</name>\n  <capacity unit='bytes'>{}</capacity>\n  <allocation unit='bytes'>0</allocation>\n"
      "  <target>\n    <format type='raw'/>\n    {}\n  </target>\n</volume>\n",
      xml_escape(name), capacity, volume_permissions_xml(mode));
}

}  // namespace

bool upload_complete(const std::set<std::string>& names, const std::string& name) {
  return names.count(name) && names.count(marker_volume_name(name));
}

UploadResult upload_volume(StoragePool& pool, const std::string& name, const std::filesystem::path& file,
                           const std::string& sha256, unsigned mode) {
  Source src;
  src.fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (src.fd < 0)
    throw std::system_error(errno, std::generic_category(), fmt::format("opening {} to upload it", file.string()));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{src.fd};
  struct stat st;
  if (::fstat(src.fd, &st) != 0) throw std::system_error(errno, std::generic_category(), file.string());
  if (const char* p = std::getenv("SPROUT_TEST_UPLOAD_PAUSE")) {  // N[:SECONDS]
    char* end = nullptr;
    src.pause_after = std::strtoull(p, &end, 10);
    if (end && *end == ':') src.pause_seconds = static_cast<unsigned>(std::min(60UL, std::strtoul(end + 1, nullptr, 10)));
  }

  UploadResult r;
  r.volume = name;
  r.file_bytes = static_cast<std::uint64_t>(st.st_size);
  StorageVolume vol = pool.create(empty_volume_xml(name, r.file_bytes, mode), name);
  const std::string what = fmt::format("uploading {} into {}", file.string(), vol.describe());
  virStreamPtr stream = lv().virStreamNew(pool.connection(), 0);
  std::string failure;
  if (!stream) {
    failure = fmt::format("{}: opening a stream: {}", what, libvirt_last_error());
  } else if (lv().virStorageVolUpload(vol.get(), stream, 0, 0, VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM) < 0) {
    failure = fmt::format("{}: {}", what, libvirt_last_error());
    lv().virStreamAbort(stream);
  } else if (lv().virStreamSparseSendAll(stream, send_data, in_data, skip_hole, &src) < 0) {
    failure = src.error ? fmt::format("{}: reading {}: {}", what, file.string(), std::strerror(src.error))
                        : fmt::format("{}: {}", what, libvirt_last_error());
    lv().virStreamAbort(stream);
  } else if (lv().virStreamFinish(stream) < 0) {
    failure = fmt::format("{}: finishing the stream: {}", what, libvirt_last_error());
    lv().virStreamAbort(stream);
  } else if (struct stat after; src.covered != r.file_bytes || ::fstat(src.fd, &after) != 0 ||
                                after.st_size != st.st_size || src.hash.finish_hex() != sha256) {
    // Not what was hashed (changed since, or while it was read): never made a volume.
    failure = fmt::format("{}: {} changed while sprout read it (its bytes are not the ones hashed as {}); nothing "
                          "uses the volume. Leave the file alone during define, then define again",
                          what, file.string(), sha256.substr(0, 16));
  }
  if (stream) lv().virStreamFree(stream);
  if (!failure.empty()) {
    lv().virResetLastError();
    try {
      vol.remove();
    } catch (const std::exception& e) {
      spdlog::warn("{} stays as a partial upload (never attached; the next define or gc removes it): {}",
                   vol.describe(), e.what());
    }
    throw LibvirtError(failure);
  }
  r.data_bytes = src.carried;
  const std::string marker = marker_volume_name(name);
  pool.create(empty_volume_xml(marker, 0, 0400), marker);
  spdlog::info("{}: uploaded {} ({} bytes, {} of them data carried by the stream)", pool.name(), name, r.file_bytes,
               r.data_bytes);
  return r;
}

std::vector<std::string> remove_partial_uploads(StoragePool& pool, const std::set<std::string>& in_use) {
  const auto all = pool.volume_names();
  const std::set<std::string> names(all.begin(), all.end());
  std::vector<std::string> removed;
  for (const auto& n : all) {
    const VolumeName v = parse_volume_name(n);
    const bool partial = v.uploaded() && !names.count(marker_volume_name(n));
    const bool stray_marker = v.kind == VolumeName::marker && !names.count(v.target);
    if (!partial && !stray_marker) continue;
    if (partial && in_use.count(n)) {
      spdlog::warn("storage pool {}: {} has no completion marker but a domain or an overlay depends on it: left as "
                   "it is (not attached by this define)",
                   pool.name(), n);
      continue;
    }
    if (auto vol = pool.volume(n)) {
      spdlog::warn("{}: removing {}", vol->describe(),
                   partial ? "a partial upload (no completion marker: an upload was cut off)"
                           : "the marker of a volume that is gone");
      vol->remove();
      removed.push_back(n);
    }
  }
  return removed;
}

}  // namespace sprout
