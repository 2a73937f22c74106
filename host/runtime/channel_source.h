// Where a recorder (channel_recorder.h) gets a VM's status channel from, one
// connection at a time: the status socket qemu listens on in the state directory
// (`sprout run`'s qemu, unix_channel_source() here), or libvirt's API for a libvirt
// domain on this host or another (backend/, VmBackend::status_channel). The recorder
// owns the rules (reconnecting with backoff, telling runs apart, the record); a
// source only opens, reads and closes, never blocking without a bound.
//
// What a source says about a run:
// - run_identity(): the run the open channel belongs to. A status socket's is its
//   device, inode and change time (qemu makes a new socket for each run). A libvirt
//   domain's is its UUID and id, and this host's boot id when the daemon is on this
//   host (libvirtd numbers domains afresh after it restarts or its host boots); a
//   domain stopped and started again while libvirtd restarted can still come back
//   with the id it had. The recorder therefore also
//   counts a stream that ended (`ended`) as the end of the run, whatever comes next.
// - read() `ended`: the channel's far end closed it: the VM's qemu exited (its run is
//   over). `lost`: the way to the channel broke (libvirtd restarted, the network or the
//   host went away, keepalive gave up): the run may well go on.
// - open() `not_running`: there is no run to connect to (no socket; the domain is not
//   defined or not running); `unreachable`: it cannot tell (libvirt cannot be reached,
//   another reader has the channel).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

namespace sprout {

class ChannelSource {
 public:
  virtual ~ChannelSource() = default;

  struct Opened {
    enum Kind { open, not_running, unreachable } kind = open;
    std::string why;  ///< not open: why, for the log
  };
  /// Tries to open the channel now; never waits for it to appear.
  virtual Opened open() = 0;
  /// The run of the open channel (see above); "" when not open.
  virtual std::string run_identity() const = 0;
  /// The descriptor to poll for input while open, -1 otherwise.
  virtual int fd() const = 0;
  enum class Read { data, again, ended, lost };
  /// Appends at most `max` bytes without blocking. After `ended` or `lost` the source
  /// is closed (why() says why) and open() may be tried again.
  virtual Read read(std::string& out, std::size_t max) = 0;
  /// Closes the channel (what is still unread is lost: read until `again` first).
  virtual void close() = 0;
  /// How the last channel ended or was lost.
  virtual std::string why() const = 0;
  /// What it is, for messages ("/var/lib/sprout/vms/web/status.sock", "channel ... of domain web at URI").
  virtual std::string describe() const = 0;
  /// The longest pause between two attempts to open.
  virtual std::chrono::milliseconds max_backoff() const { return std::chrono::milliseconds(500); }
};

/// The status socket qemu listens on (`sprout run`, or a qemu backend run with
/// --external-recorder); its identity is status/run_state.h's channel_identity().
std::unique_ptr<ChannelSource> unix_channel_source(std::filesystem::path socket);

}  // namespace sprout
