// The libvirt backend: the VM is a domain sprout defined (`sprout define`).
#include <chrono>
#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>

#include "backend/backend.h"
#include "backend/libvirt_device_streams.h"
#include "spec/spec_dir.h"
#include "libvirt/libvirt_connection.h"

namespace sprout {

namespace {

class LibvirtBackend final : public VmBackend {
 public:
  std::optional<bool> running(const Spec& spec) const override {
    try {
      LibvirtConnection conn(spec.libvirt_uri);
      auto d = conn.lookup(spec.name);
      return d && d->is_active();
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }

  std::string stop(const Spec& spec, const StopRequest& how) const override {
    LibvirtConnection conn(spec.libvirt_uri);
    auto d = conn.lookup(spec.name);
    if (!d) return fmt::format("not defined at {}", conn.uri());
    require_defined_by_sprout(*d, conn.uri(), "stopping");
    return d->stop(how.grace_for(spec));
  }

  std::string remove(const Spec& spec) const override {
    LibvirtConnection conn(spec.libvirt_uri);
    auto d = conn.lookup(spec.name);
    if (!d) return fmt::format("not defined at {}", conn.uri());
    require_defined_by_sprout(*d, conn.uri(), "undefining");
    std::string how = d->stop(std::chrono::seconds(spec.shutdown_timeout_seconds));
    if (d->is_persistent()) d->undefine(kSproutUndefineFlags);
    return fmt::format("{}, then undefined at {}", how, conn.uri());
  }

  std::string start_hint(const Spec& spec) const override { return fmt::format("sprout define {} --start", vm_arguments(spec)); }

  std::string unrecorded_note(const Spec& spec) const override {
    return fmt::format("the domain runs; waiting for its recorder (`sprout watch {}`) to follow it", spec.name);
  }

  std::unique_ptr<ChannelSource> status_channel(const Spec& spec) const override {
    if (auto local = test_local_status_channel(spec)) return local;
    return libvirt_status_channel(spec.libvirt_uri, spec.name);
  }

  std::unique_ptr<ConsoleSession> attach_console(const Spec& spec) const override {
    return libvirt_console(spec.libvirt_uri, spec.name);
  }
};

}  // namespace

const VmBackend& libvirt_backend() {
  static const LibvirtBackend backend;
  return backend;
}

}  // namespace sprout
