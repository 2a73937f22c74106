// Thin RAII wrappers over the libvirt C API for the libvirt backend. Every failing
// call throws LibvirtError naming what was attempted, on which domain or URI, with
// libvirt's own message (virGetLastErrorMessage). libvirt's default error printing
// to stderr is switched off: sprout reports errors itself.
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/types.h>

#include <libvirt/libvirt.h>

namespace sprout {

struct LibvirtError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class LibvirtDomain {
 public:
  LibvirtDomain(virDomainPtr d, std::string name) : d_(d), name_(std::move(name)) {}
  LibvirtDomain(LibvirtDomain&& o) noexcept : d_(o.d_), name_(std::move(o.name_)) { o.d_ = nullptr; }
  LibvirtDomain(const LibvirtDomain&) = delete;
  LibvirtDomain& operator=(const LibvirtDomain&) = delete;
  ~LibvirtDomain();

  const std::string& name() const { return name_; }
  /// The handle, for the calls this class does not wrap (libvirt_stream.h); stays ours.
  virDomainPtr raw() const { return d_; }
  bool is_active() const;
  bool is_persistent() const;
  int id() const;  ///< -1 when not running
  std::string uuid() const;
  /// flags: VIR_DOMAIN_XML_INACTIVE etc.
  std::string xml(unsigned flags = 0) const;
  /// The persistent definition's sprout metadata element, or nullopt when it has none.
  std::optional<std::string> sprout_metadata() const;
  void create();
  void shutdown();
  void destroy();
  void undefine(unsigned flags);
  void set_autostart(bool on);

  /// Graceful stop: ACPI shutdown, wait up to `timeout` for the domain to go
  /// inactive, then destroy. Returns "not running", "shut down" or "destroyed".
  std::string stop(std::chrono::seconds timeout);

 private:
  [[noreturn]] void fail(const std::string& what) const;
  virDomainPtr d_;
  std::string name_;
};

class LibvirtConnection {
 public:
  /// Opens a read-write connection; LibvirtError when that fails.
  explicit LibvirtConnection(const std::string& uri);
  /// Takes over a connection opened elsewhere (libvirt_stream.h opens with a bound).
  LibvirtConnection(std::string uri, virConnectPtr opened) : uri_(std::move(uri)), c_(opened) {}
  LibvirtConnection(const LibvirtConnection&) = delete;
  LibvirtConnection& operator=(const LibvirtConnection&) = delete;
  ~LibvirtConnection();

  const std::string& uri() const { return uri_; }
  /// The handle, for the calls this class does not wrap (libvirt_stream.h); stays ours.
  virConnectPtr raw() const { return c_; }
  /// nullopt when no domain has that name.
  std::optional<LibvirtDomain> lookup(const std::string& name);
  LibvirtDomain define(const std::string& xml, const std::string& name);
  /// Whether the host (as libvirt sees it) offers domain type 'kvm'.
  bool has_kvm();
  /// The uid libvirt's DAC driver runs qemu as by default (qemu.conf's `user`, from
  /// the host capabilities' <secmodel>); nullopt when libvirt does not say.
  std::optional<uid_t> dac_qemu_uid();
  /// The XML (live and persistent definition) of every domain of the connection: what
  /// their disks name (libvirt_pool_gc.h).
  std::vector<std::string> all_domain_xml();
  /// The connection itself, for the units that wrap more of libvirt (libvirt_pool.h).
  virConnectPtr get() const { return c_; }

 private:
  std::string uri_;
  virConnectPtr c_ = nullptr;
};

/// The message of libvirt's last error in this thread ("unknown libvirt error" if none).
std::string libvirt_last_error();

/// How sprout undefines a domain: its managed save, snapshot and checkpoint metadata
/// go; NVRAM and TPM state stay (they are the VM's, like its disks).
inline constexpr unsigned kSproutUndefineFlags =
    VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
    VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | VIR_DOMAIN_UNDEFINE_KEEP_TPM;

/// A domain of that name that sprout did not define (no sprout metadata) is not sprout's
/// to replace, stop or remove: throws saying so (`doing`: "replacing", ...).
void require_defined_by_sprout(LibvirtDomain& d, const std::string& uri, const char* doing);

}  // namespace sprout
