#include "backend/libvirt_device_streams.h"

#include <chrono>
#include <stdexcept>

#include <fmt/format.h>

#include "libvirt/libvirt_stream.h"
#include "status_protocol.h"

namespace sprout {

namespace {

class LibvirtStatusChannel final : public ChannelSource {
 public:
  LibvirtStatusChannel(std::string uri, std::string domain) : uri_(std::move(uri)), domain_(std::move(domain)) {}

  Opened open() override {
    s_.reset();
    try {
      // A run whose channel ended stays ended: for a while its domain may still look
      // active (libvirt stopping it). After that the same identity is a new run
      // (libvirtd restarted and numbered it afresh: channel_source.h).
      const bool recent = std::chrono::steady_clock::now() - ended_at_ < kEndedRunGrace;
      s_ = DomainStream::open(uri_, domain_, DomainStream::Device::channel, std::string(kStatusPortName),
                              recent ? ended_identity_ : "");
      return {};
    } catch (const DomainStreamError& e) {
      return {e.kind == DomainStreamError::not_running ? Opened::not_running : Opened::unreachable, e.what()};
    } catch (const LibvirtError& e) {  // libvirt itself cannot be loaded: nothing to retry for, but say so
      return {Opened::unreachable, e.what()};
    }
  }
  std::string run_identity() const override { return s_ ? s_->run_identity() : ""; }
  int fd() const override { return s_ ? s_->fd() : -1; }
  Read read(std::string& out, std::size_t max) override {
    if (!s_) return Read::ended;
    switch (s_->read(out, max)) {
      case DomainStream::Read::data: return Read::data;
      case DomainStream::Read::again: return Read::again;
      case DomainStream::Read::ended:
        why_ = s_->why();
        ended_identity_ = s_->run_identity();
        ended_at_ = std::chrono::steady_clock::now();
        s_.reset();
        return Read::ended;
      case DomainStream::Read::lost: break;
    }
    why_ = s_->why();
    s_.reset();
    return Read::lost;
  }
  void close() override { s_.reset(); }
  std::string why() const override { return why_; }
  std::string describe() const override {
    return fmt::format("channel {} of domain {} at {}", kStatusPortName, domain_, uri_);
  }
  std::chrono::milliseconds max_backoff() const override { return std::chrono::seconds(2); }

 private:
  static constexpr std::chrono::seconds kEndedRunGrace{30};
  std::string uri_, domain_, why_;
  std::unique_ptr<DomainStream> s_;
  std::string ended_identity_;  // the run whose channel ended last, and when
  std::chrono::steady_clock::time_point ended_at_{};
};

class LibvirtConsole final : public ConsoleSession {
 public:
  explicit LibvirtConsole(std::unique_ptr<DomainStream> s) : s_(std::move(s)) {}
  int fd() const override { return s_->fd(); }
  Read read(std::string& out) override {
    switch (s_->read(out, 65536)) {
      case DomainStream::Read::data: return Read::data;
      case DomainStream::Read::again: return Read::again;
      default: return Read::ended;
    }
  }
  bool write(std::string_view bytes) override { return s_->write(bytes); }
  std::string why() const override { return s_->why(); }

 private:
  std::unique_ptr<DomainStream> s_;
};

}  // namespace

std::unique_ptr<ChannelSource> libvirt_status_channel(std::string uri, std::string domain) {
  return std::make_unique<LibvirtStatusChannel>(std::move(uri), std::move(domain));
}

std::unique_ptr<ConsoleSession> libvirt_console(const std::string& uri, const std::string& domain) {
  try {
    return std::make_unique<LibvirtConsole>(DomainStream::open(uri, domain, DomainStream::Device::console));
  } catch (const DomainStreamError& e) {
    switch (e.kind) {
      case DomainStreamError::busy:
        throw std::runtime_error(fmt::format(
            "{}: {}: another console session is attached (`virsh console` or `sprout console`); detach it "
            "(Ctrl-]) first, or take it over with `virsh -c {} console --force {}`",
            domain, e.what(), uri, domain));
      case DomainStreamError::not_running:
        throw std::runtime_error(fmt::format("{}: no console to attach to: {}; is the VM running? (`sprout status {}`)",
                                             domain, e.what(), domain));
      default: throw std::runtime_error(fmt::format("{}: cannot attach to its console: {}", domain, e.what()));
    }
  }
}

}  // namespace sprout
