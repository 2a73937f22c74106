#include "libvirt/libvirt_stream.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "base/boot_id.h"
#include "libvirt/libvirt_api.h"
#include "libvirt/libvirt_event_loop.h"

namespace sprout {

namespace {
const LibvirtApi& lv() { return libvirt_api(); }

constexpr int kKeepAliveIntervalS = 5;
constexpr unsigned kKeepAliveCount = 3;
constexpr int kStreamEvents = VIR_STREAM_EVENT_READABLE | VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP;

const char* close_reason(int reason) {
  switch (reason) {
    case VIR_CONNECT_CLOSE_REASON_ERROR: return "the connection failed";
    case VIR_CONNECT_CLOSE_REASON_EOF: return "libvirt closed the connection (libvirtd stopped or restarted?)";
    case VIR_CONNECT_CLOSE_REASON_KEEPALIVE: return "libvirt stopped answering keepalive (host or network gone?)";
    case VIR_CONNECT_CLOSE_REASON_CLIENT: return "the connection was closed";
    default: return "the connection closed";
  }
}
constexpr std::chrono::seconds kOpenTimeout{15};

// Opens that did not return within kOpenTimeout and still run in their thread.
std::atomic<int> stuck_opens{0};

// virConnectOpen has no timeout of its own, and keepalive starts only once it has
// returned: a daemon that accepts and never answers (hung; or a socket systemd holds
// while libvirtd starts) would hold the caller. So it runs in a thread of its own and
// is waited for at most `timeout`. One that has not returned by then is left to
// finish there (a connection it gets late is closed at once), and none is started
// while such a one is still out.
/// A URI without a host part (qemu:///system, qemu+unix:///system?socket=...) names a
/// daemon on this host.
bool uri_is_this_host(const std::string& uri) {
  std::size_t scheme_end = uri.find("://");
  return scheme_end != std::string::npos && uri.compare(scheme_end + 3, 1, "/") == 0;
}

virConnectPtr open_bounded(const std::string& uri, std::chrono::seconds timeout) {
  if (stuck_opens.load() > 0)
    throw DomainStreamError(DomainStreamError::unreachable,
                            fmt::format("libvirt at {} has not answered an earlier connection yet", uri));
  struct Pending {
    std::mutex m;
    std::condition_variable cv;
    bool done = false, abandoned = false;
    virConnectPtr c = nullptr;
    std::string err;
  };
  auto p = std::make_shared<Pending>();
  std::thread([p, uri] {
    virConnectPtr c = lv().virConnectOpen(uri.c_str());
    std::string err = c ? "" : libvirt_last_error();  // (libvirt's errors are per thread)
    std::lock_guard<std::mutex> l(p->m);
    if (p->abandoned) {
      if (c) lv().virConnectClose(c);
      --stuck_opens;
      return;
    }
    p->c = c;
    p->err = std::move(err);
    p->done = true;
    p->cv.notify_one();
  }).detach();
  std::unique_lock<std::mutex> l(p->m);
  if (!p->cv.wait_for(l, timeout, [&] { return p->done; })) {
    p->abandoned = true;
    ++stuck_opens;
    throw DomainStreamError(DomainStreamError::unreachable,
                            fmt::format("libvirt at {} did not answer within {} s", uri, timeout.count()));
  }
  if (!p->c)
    throw DomainStreamError(DomainStreamError::unreachable,
                            fmt::format("cannot connect to libvirt at {}: {} (is libvirtd running? set libvirt.uri "
                                        "in the spec)",
                                        uri, p->err));
  return p->c;
}

}  // namespace

// The part libvirt's event thread touches: an eventfd to wake the poll loop, and
// whether the connection closed. libvirt holds one reference of its own for each
// callback and drops it (the free function) once that callback can no longer run.
struct DomainStream::Shared {
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::atomic<bool> lost{false};
  std::mutex m;
  std::string lost_why;
  ~Shared() {
    if (efd >= 0) ::close(efd);
  }
  void wake() const {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(efd, &one, sizeof one);
  }
  void drain() const {
    std::uint64_t v;
    [[maybe_unused]] ssize_t n = ::read(efd, &v, sizeof v);
  }
};

namespace {
using SharedRef = std::shared_ptr<DomainStream::Shared>;
void free_ref(void* opaque) { delete static_cast<SharedRef*>(opaque); }

// The event thread: the stream has something (data, its end, an error). Interest is
// switched off until read() has taken what is there and asks again: libvirt's remote
// streams report "readable" for as long as data is queued, which would otherwise spin
// this thread until the poll loop gets to it.
void on_stream_event(virStreamPtr st, int, void* opaque) {
  lv().virStreamEventUpdateCallback(st, 0);
  (*static_cast<SharedRef*>(opaque))->wake();
}

void on_connection_closed(virConnectPtr, int reason, void* opaque) {
  auto& s = *static_cast<SharedRef*>(opaque);
  {
    std::lock_guard<std::mutex> l(s->m);
    s->lost_why = close_reason(reason);
  }
  s->lost = true;
  s->wake();
}
}  // namespace

std::unique_ptr<DomainStream> DomainStream::open(const std::string& uri, const std::string& domain, Device device,
                                                 const std::string& channel, const std::string& not_run) {
  start_libvirt_event_loop();  // before the connection: its socket joins the loop
  std::unique_ptr<DomainStream> s(new DomainStream());
  s->what_ = device == Device::channel ? fmt::format("channel {} of domain {} at {}", channel, domain, uri)
                                       : fmt::format("the console of domain {} at {}", domain, uri);
  s->shared_ = std::make_shared<Shared>();
  if (s->shared_->efd < 0)
    throw DomainStreamError(DomainStreamError::failed, fmt::format("eventfd: {}", std::strerror(errno)));
  s->conn_.emplace(uri, open_bounded(uri, kOpenTimeout));
  virConnectPtr c = s->conn_->raw();
  // 1: the other side does not do keepalive (an old libvirtd): go on without.
  if (lv().virConnectSetKeepAlive(c, kKeepAliveIntervalS, kKeepAliveCount) < 0)
    throw DomainStreamError(DomainStreamError::failed,
                            fmt::format("libvirt {}: cannot turn keepalive on: {}", uri, libvirt_last_error()));
  auto* close_ref = new SharedRef(s->shared_);
  if (lv().virConnectRegisterCloseCallback(c, on_connection_closed, close_ref, free_ref) == 0)
    s->close_callback_ = true;
  else
    delete close_ref;  // (the stream's own events still tell a lost connection, later)
  try {
    if (auto d = s->conn_->lookup(domain)) s->dom_.emplace(std::move(*d));
  } catch (const LibvirtError& e) {
    throw DomainStreamError(DomainStreamError::unreachable, e.what());
  }
  if (!s->dom_)
    throw DomainStreamError(DomainStreamError::not_running, fmt::format("no domain {} is defined at {}", domain, uri));
  if (!s->dom_->is_active())
    throw DomainStreamError(DomainStreamError::not_running, fmt::format("domain {} is not running", domain));
  // libvirt numbers domains from 1 again after its host boots, so UUID and id alone
  // would take an autostarted domain's first run after a reboot for the run recorded
  // before it: on this host's own daemon the boot's id tells them apart. (A remote
  // host's boot is not known through the API: docs/libvirt.md.)
  s->identity_ = fmt::format("libvirt:{}:{}", s->dom_->uuid(), s->dom_->id());
  if (uri_is_this_host(uri))
    if (std::string boot = host_boot_id(); !boot.empty()) s->identity_ += ":boot:" + boot;
  if (!not_run.empty() && s->identity_ == not_run)
    throw DomainStreamError(DomainStreamError::not_running,
                            fmt::format("domain {}: the run whose channel ended is still stopping", domain));

  s->st_ = lv().virStreamNew(c, VIR_STREAM_NONBLOCK);
  if (!s->st_)
    throw DomainStreamError(DomainStreamError::failed, fmt::format("libvirt {}: virStreamNew: {}", uri, libvirt_last_error()));
  int r = device == Device::channel
              ? lv().virDomainOpenChannel(s->dom_->raw(), channel.c_str(), s->st_, 0)
              : lv().virDomainOpenConsole(s->dom_->raw(), nullptr, s->st_, 0);
  if (r != 0) {
    virErrorPtr e = lv().virGetLastError();
    std::string msg = libvirt_last_error();
    // libvirt's words when another stream has the device ("Active channel stream
    // exists for this domain", "Active console session exists for this domain").
    DomainStreamError::Kind kind = DomainStreamError::failed;
    if (e && e->code == VIR_ERR_OPERATION_FAILED && msg.find("Active ") != std::string::npos)
      kind = DomainStreamError::busy;
    else if (e && e->code == VIR_ERR_OPERATION_INVALID)  // it stopped meanwhile
      kind = DomainStreamError::not_running;
    throw DomainStreamError(kind, fmt::format("libvirt: opening {}: {}", s->what_, msg));
  }
  // A domain being stopped can still hand out a stream (to a socket its dying qemu
  // still holds) that ends at once: not a run to record.
  // Looked up again (a handle's id is the one it was looked up with): a domain
  // destroyed and started meanwhile has another id, and this stream is that run's.
  std::optional<LibvirtDomain> now = [&] {
    try {
      return s->conn_->lookup(domain);
    } catch (const LibvirtError& e) {
      throw DomainStreamError(DomainStreamError::unreachable, e.what());
    }
  }();
  if (!now || !now->is_active() || now->id() != s->dom_->id())
    throw DomainStreamError(DomainStreamError::not_running,
                            fmt::format("domain {} stopped while its {} was being opened", domain,
                                        device == Device::channel ? "channel" : "console"));
  auto* stream_ref = new SharedRef(s->shared_);
  if (lv().virStreamEventAddCallback(s->st_, kStreamEvents, on_stream_event, stream_ref, free_ref) != 0) {
    delete stream_ref;
    throw DomainStreamError(DomainStreamError::failed,
                            fmt::format("libvirt: watching {}: {}", s->what_, libvirt_last_error()));
  }
  s->callback_ = true;
  return s;
}

DomainStream::~DomainStream() {
  close_stream(false);
  dom_.reset();
  if (close_callback_ && conn_) lv().virConnectUnregisterCloseCallback(conn_->raw(), on_connection_closed);
  // conn_ closes with the object.
}

void DomainStream::close_stream(bool finished) {
  if (!st_) return;
  if (callback_) lv().virStreamEventRemoveCallback(st_);
  callback_ = false;
  // After the far end's EOF, Finish is the stream's orderly close; otherwise Abort
  // (which also tells libvirtd to let the device go).
  if (!(finished && lv().virStreamFinish(st_) == 0)) lv().virStreamAbort(st_);
  lv().virStreamFree(st_);
  st_ = nullptr;
}

int DomainStream::fd() const { return shared_->efd; }

DomainStream::Read DomainStream::read(std::string& out, std::size_t max) {
  if (closed_) return closed_as_;
  shared_->drain();
  auto close_as = [&](Read how, std::string why, bool finished) {
    why_ = std::move(why);
    close_stream(finished);
    closed_ = true;
    closed_as_ = how;
    shared_->wake();  // every later read says so too; the poll loop hears it at once
    return how;
  };
  char buf[65536];
  int n = lv().virStreamRecv(st_, buf, std::min(max, sizeof buf));
  if (n > 0) {
    out.append(buf, static_cast<std::size_t>(n));
    shared_->wake();  // there may be more: the caller reads again or polls and comes back at once
    return Read::data;
  }
  if (n == 0) return close_as(Read::ended, fmt::format("{} ended (its qemu closed it)", what_), true);
  if (n == -1) {
    std::string why = libvirt_last_error();
    if (shared_->lost) {
      std::lock_guard<std::mutex> l(shared_->m);
      why = shared_->lost_why;
    }
    return close_as(Read::lost, fmt::format("lost {}: {}", what_, why), false);
  }
  // -2: nothing now. The connection may have closed without the stream hearing of it.
  if (shared_->lost) {
    std::string why;
    {
      std::lock_guard<std::mutex> l(shared_->m);
      why = shared_->lost_why;
    }
    return close_as(Read::lost, fmt::format("lost {}: {}", what_, why), false);
  }
  lv().virStreamEventUpdateCallback(st_, kStreamEvents);
  return Read::again;
}

bool DomainStream::write(std::string_view bytes, int bound_ms) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(bound_ms);
  while (!bytes.empty()) {
    if (closed_ || shared_->lost) return false;
    int n = lv().virStreamSend(st_, bytes.data(), bytes.size());
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n != -2 || std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // no room yet
  }
  return true;
}

}  // namespace sprout
