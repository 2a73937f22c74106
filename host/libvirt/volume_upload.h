// One local file into a new volume of a storage pool, through libvirt's API only:
// virStorageVolUpload with a sparse stream (VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM,
// virStreamSparseSendAll), so the file's holes do not travel, only their lengths.
// The stream's data bytes are counted.
//
// An upload is whole only once its completion marker exists: a volume NAME@complete
// (volume_names.h), created after virStreamFinish returned. libvirt cannot rename a
// volume, and cloning a finished temporary volume would copy every byte again on the
// daemon's host; the marker costs one empty volume. A volume sprout uploads that has
// no marker is a partial upload (a killed sprout, a dropped connection): it is never
// attached, and remove_partial_uploads() deletes it. A failed upload deletes its
// volume itself when the connection still lets it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "libvirt/libvirt_pool.h"

namespace sprout {

struct UploadResult {
  std::string volume;
  std::uint64_t file_bytes = 0;   ///< the file's size (the volume's capacity)
  std::uint64_t data_bytes = 0;   ///< what the stream carried (the file's data, not its holes)
};

/// Creates volume `name` (raw, the file's size, root's with `mode`), uploads `file`
/// into it with a sparse stream (from one descriptor, hashing what the stream carries,
/// holes as zeros), finishes the stream and then, only if those bytes hash to
/// `sha256` (hex) and are the file's size as it was opened, creates the marker.
/// LibvirtError (or std::system_error for the local file) naming the volume; the
/// volume is deleted on failure where possible.
///
/// Test seam: $SPROUT_TEST_UPLOAD_PAUSE=N[:S] makes an upload stop for S seconds (at
/// most and by default 60) once the stream carried N bytes or more, after saying
/// "upload paused" on stderr (the libvirt suite kills sprout there, or changes the
/// file being uploaded).
UploadResult upload_volume(StoragePool& pool, const std::string& name, const std::filesystem::path& file,
                           const std::string& sha256, unsigned mode);

/// Whether `name` is a whole upload: it and its marker are among `names`.
bool upload_complete(const std::set<std::string>& names, const std::string& name);

/// Deletes every volume sprout uploads that has no marker, and every marker whose
/// volume is gone; never one of `in_use` (libvirt_pool_gc.h: a domain or an overlay
/// depends on it), which is reported instead. Returns the names deleted. The caller
/// holds the pool's lock (pool_lock.h), so no upload of this host is under way.
std::vector<std::string> remove_partial_uploads(StoragePool& pool, const std::set<std::string>& in_use);

}  // namespace sprout
