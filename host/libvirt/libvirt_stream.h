// A domain's character device read and written through libvirt's API: its status
// channel (virDomainOpenChannel, a virtio port by name) or its serial console
// (virDomainOpenConsole). libvirtd opens the device on the domain's host (a unix
// socket or a pty; the qemu driver supports nothing else) and carries its bytes over
// the connection, so this works for a domain on this host and on another one alike,
// and the device's path never has to be reachable from here.
//
// Promises:
// - Nothing blocks without a bound. The stream is non-blocking (VIR_STREAM_NONBLOCK):
//   read() and write() never wait for the guest. Every connection has keepalive on
//   (every 5 s, given up after 3 unanswered: a silent peer is noticed within about
//   20 s), which needs libvirt's event loop (libvirt_event_loop.h, started here);
//   libvirt's RPCs on that connection (lookup, open) end within that bound too (its
//   client keeps the keepalive timer while a call waits; tried here only on an idle
//   stream: tests/libvirt, libvirtd paused).
//   Opening the connection, before keepalive can run, waits at most 15 s (in a thread
//   of its own, which a daemon that never answers keeps: no second one is started
//   while it is out).
// - fd() (an eventfd) becomes readable when read() has something to say: bytes, the
//   end of the stream, or the loss of the connection (libvirt's close callback:
//   libvirtd restarted or went away, keepalive gave up). A poll loop sleeps on it.
// - read() tells the stream's end (`ended`: the device closed: qemu exited) from a
//   lost connection or a failed stream (`lost`, with why): for a status channel the
//   first ends the VM's run, the second says nothing about it.
// - What the far end sent while the connection was silently dead (before keepalive
//   gave up) is lost with it: libvirtd read it from the device for a client that is
//   gone. A connection that closes (libvirtd restarted) loses at most what was in
//   flight at that moment.
// - One object, one connection, one stream: the destructor removes the callbacks,
//   aborts the stream if it has not ended, and closes the connection.
//
// No VIR_DOMAIN_CHANNEL_FORCE / VIR_DOMAIN_CONSOLE_FORCE: libvirt lets one stream have
// a device at a time, and forcing takes it from whoever has it (libvirt aborts their
// stream). The only other reader of sprout's status channel is another recorder
// (another `sprout watch`, say on a second control host): forcing would make two
// recorders take the channel from each other in turn, each record then missing what
// the other got. Without it the second waits (`busy`). The one stream a watcher should
// take over is its own from a connection that died without closing (network gone):
// libvirtd drops it when its own keepalive gives up on that client (libvirtd.conf
// keepalive_interval 5 x keepalive_count 5: about 30 s), and the recorder retries
// until then. A console is a person's: `sprout console` does not take it from another
// session either (virsh console --force does, deliberately).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "libvirt/libvirt_connection.h"

namespace sprout {

/// Why a stream could not be opened.
struct DomainStreamError : LibvirtError {
  enum Kind {
    unreachable,  ///< no connection to libvirt (it is down, or the host is)
    not_running,  ///< no such domain, or it is not running
    busy,         ///< another stream has the device
    failed,       ///< libvirt refused (no such channel, ...)
  };
  DomainStreamError(Kind k, const std::string& what) : LibvirtError(what), kind(k) {}
  Kind kind;
};

class DomainStream {
 public:
  enum class Device { channel, console };
  /// Connects to `uri`, finds `domain`, opens its channel `channel` (a virtio port's
  /// name) or its first console. Throws DomainStreamError: `not_running` also when the
  /// domain's run is `not_run` (a run whose channel ended: qemu is gone or going, and
  /// libvirt, which may not have noticed yet, could still hand out a stream that ends
  /// at once) or when it stopped while the device was being opened.
  static std::unique_ptr<DomainStream> open(const std::string& uri, const std::string& domain, Device device,
                                            const std::string& channel = "", const std::string& not_run = "");
  ~DomainStream();
  DomainStream(const DomainStream&) = delete;
  DomainStream& operator=(const DomainStream&) = delete;

  /// Readable when read() has something to say (see above).
  int fd() const;
  enum class Read { data, again, ended, lost };
  /// Appends at most `max` bytes to `out` without blocking: `data` (fd() stays
  /// readable: call again), `again` (nothing now), `ended` or `lost` (why()). After
  /// `ended` or `lost` the stream is closed and every read says so again.
  Read read(std::string& out, std::size_t max);
  /// Sends all of `bytes`, waiting at most `bound_ms` for room; false when the stream
  /// is gone or took nothing for that long.
  bool write(std::string_view bytes, int bound_ms = 5000);
  /// Why the stream was lost, or how it ended.
  const std::string& why() const { return why_; }
  /// The domain's run this stream belongs to: "libvirt:UUID:ID" (the domain id is new
  /// with each start of the domain; see runtime/channel_source.h on what it cannot tell).
  const std::string& run_identity() const { return identity_; }
  /// For messages: "channel NAME of domain D at URI", "the console of domain D at URI".
  const std::string& describe() const { return what_; }

  struct Shared;  // what libvirt's event thread shares with us (libvirt_stream.cc)

 private:
  DomainStream() = default;
  void close_stream(bool finished);

  std::optional<LibvirtConnection> conn_;
  std::optional<LibvirtDomain> dom_;
  virStreamPtr st_ = nullptr;
  bool callback_ = false, close_callback_ = false;
  std::shared_ptr<Shared> shared_;
  std::string identity_, what_, why_;
  bool closed_ = false;
  Read closed_as_ = Read::ended;
};

}  // namespace sprout
