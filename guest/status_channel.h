// The guest end of the status channel. Events get seq, time, boot id and VM name
// here, go to a local log file at once (one JSON line each, so nothing is lost
// when nobody listens), and into a bounded queue that is written to the
// virtio-serial port without ever blocking:
//  - the port is opened O_NONBLOCK; EAGAIN / POLLHUP (no host connected) leave the
//    queue as it is for the next try;
//  - the queue holds at most max_queued events; when full, the oldest `log` event
//    (else the oldest event) is dropped and counted;
//  - flush(timeout) waits at most `timeout` for a host to take what is queued,
//    sleeping (not spinning) while poll() reports POLLHUP without POLLOUT.
// Lines are encoded when written, with the VM name known by then; until
// set_vm() is called (the manifest is read) nothing is sent to the port, and flush()
// sends with the name "unknown". No port at all is fine: only the log file is kept.
// Each event also gets a line on stderr (spdlog; the journal on NixOS, the serial
// console in the test guest, slow under TCG). Those lines are held for as long as
// the port holds the events (until the VM name is known) and written after the
// next port write, so the console never delays what the host is told; flush() and
// the destructor write any still held.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "status_protocol.h"

namespace sprout::agent {

/// The /dev node of the virtio-serial port named `name` (guest path): udev's link
/// /dev/virtio-ports/NAME when it exists, else found through
/// /sys/class/virtio-ports/*/name under `root` and created from `dev` if missing;
/// empty when there is no such port.
std::string find_virtio_port(const std::string& root, const std::string& name);

class StatusChannel {
 public:
  /// fd: the port (non-blocking; -1 = none), owned. log_path: empty = no log file.
  StatusChannel(int fd, const std::string& log_path, std::string boot_id, std::size_t max_queued = 512);
  ~StatusChannel();
  StatusChannel(const StatusChannel&) = delete;
  StatusChannel& operator=(const StatusChannel&) = delete;

  /// Opens the port at `device` O_NONBLOCK (returns -1 when it cannot).
  static int open_port(const std::string& device);

  void set_vm(const std::string& vm);
  void set_generation(const std::string& g) { generation_ = g; }
  /// Stamps, logs, queues and tries to write (never blocks).
  void send(Phase phase, std::string message, nlohmann::json detail = nullptr);
  /// Writes what it can without waiting. True when the queue is empty.
  bool pump();
  /// Waits at most `timeout` until the queue is empty. True when it is.
  bool flush(std::chrono::milliseconds timeout);

  std::size_t queued() const { return queue_.size(); }
  std::uint64_t dropped() const { return dropped_; }
  std::uint64_t sent() const { return sent_; }
  bool has_port() const { return fd_ >= 0; }
  const std::string& log_error() const { return log_error_; }

 private:
  int fd_;
  int log_fd_ = -1;
  std::string log_error_;
  std::string boot_id_;
  std::string vm_;
  std::string generation_;
  std::size_t max_queued_;
  std::uint64_t seq_ = 0;
  std::uint64_t dropped_ = 0;
  std::uint64_t sent_ = 0;
  std::deque<StatusEvent> queue_;
  std::string pending_;  ///< the encoded front event, partly written
  bool pending_valid_ = false;
  std::vector<std::pair<Phase, std::string>> console_held_;  ///< stderr lines not yet written

  void write_console();
};

}  // namespace sprout::agent
