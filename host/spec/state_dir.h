// A VM's state directory (the spec's stateDir), the one place that knows its layout:
// the overlay (the VM's own disk, and overlays kept aside by baseChange "recreate"),
// the record of the base the overlay was made from, the exported disks' links, the
// status record and its events, the logs, the run lock, the export record and the sockets. docs/spec.md lists the files.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace sprout {

struct StateDir {
  std::filesystem::path root;

  /// Makes the directory (its parents as create_directories does) closed to other
  /// users: 0700, or 0711 when `traversable` (libvirt's unprivileged qemu must reach the
  /// files it is handed; then each parent it makes is 0711 too, whatever the umask). An existing one that grants more is tightened, and so is
  /// every regular file in it (group and other bits off); links (to exported images)
  /// and what they point to are left alone. A VM's disk and logs are its private data.
  void make_private(bool traversable) const;
  /// The mode files in it are created with.
  static constexpr mode_t kFileMode = 0600;

  /// The overlay on the base image: the VM's own state.
  std::filesystem::path overlay() const { return root / "root.qcow2"; }
  /// Overlays kept aside (baseChange "recreate") are named this prefix + a time.
  static constexpr std::string_view kOverlayAsidePrefix = "root.qcow2.old-";
  static bool is_overlay_aside(std::string_view file_name) { return file_name.rfind(kOverlayAsidePrefix, 0) == 0; }
  /// root.qcow2 and the overlays kept aside, sorted; none when the directory is not there.
  std::vector<std::filesystem::path> overlays() const;
  /// Which base image (and baseSystem) root.qcow2 was made from (disk/overlay_origin.h).
  std::filesystem::path overlay_origin() const { return root / "overlay-origin.json"; }

  /// The link to an exported disk of `role` ("config", "self", "ssh", "closure").
  std::filesystem::path image_link(std::string_view role) const { return root / (std::string(role) + ".img"); }

  std::filesystem::path status() const { return root / "status.json"; }
  std::filesystem::path events() const { return root / "events.jsonl"; }
  std::filesystem::path events_rotated() const { return root / "events.jsonl.1"; }
  /// qemu's own messages (stderr) of the current run.
  std::filesystem::path qemu_log() const { return root / "qemu.log"; }
  std::filesystem::path console_log() const { return root / "console.log"; }
  std::filesystem::path console_rotated() const { return root / "console.log.1"; }
  /// Held by the `sprout run` of the VM (runtime/run_lock.h).
  std::filesystem::path run_lock() const { return root / "run.lock"; }
  /// What a `sprout run` that `sprout start` detached writes (its stdout and stderr).
  std::filesystem::path run_log() const { return root / "run.log"; }
  /// Held (flock) by the one `sprout console` attached to the VM's console socket.
  std::filesystem::path console_lock() const { return root / "console.lock"; }
  /// What the last export exported (disk/prepare.h).
  std::filesystem::path export_record() const { return root / "export.json"; }

  /// The status channel's socket of a qemu-backend VM (a libvirt domain's is libvirt's
  /// to place, read through its API: backend/backend.h).
  std::filesystem::path status_socket() const { return root / "status.sock"; }
  std::filesystem::path qmp_socket() const { return root / "qmp.sock"; }
  /// The serial console, for `sprout console` (qemu backend).
  std::filesystem::path console_socket() const { return root / "console.sock"; }
};

}  // namespace sprout
