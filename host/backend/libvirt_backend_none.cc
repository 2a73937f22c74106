// The libvirt backend of a build without libvirt: it cannot ask libvirt (whether a
// domain runs is unknown), nor stop or undefine its domains.
#include <stdexcept>

#include <fmt/format.h>

#include "backend/backend.h"
#include "spec/spec_dir.h"

namespace sprout {

namespace {

[[noreturn]] void no_libvirt() {
  throw std::runtime_error("this build of sprout has no libvirt support (it was built without libvirt-dev; rebuild "
                           "with libvirt-dev installed, meson option -Dlibvirt=enabled)");
}

class NoLibvirtBackend final : public VmBackend {
 public:
  std::optional<bool> running(const Spec&) const override { return std::nullopt; }
  std::string stop(const Spec&, const StopRequest&) const override { no_libvirt(); }
  std::string remove(const Spec&) const override { no_libvirt(); }
  std::string start_hint(const Spec& spec) const override { return fmt::format("sprout define {} --start", vm_arguments(spec)); }
  std::string unrecorded_note(const Spec&) const override { return "this build cannot ask libvirt"; }
  std::unique_ptr<ChannelSource> status_channel(const Spec& spec) const override {
    if (auto local = test_local_status_channel(spec)) return local;
    no_libvirt();
  }
  std::unique_ptr<ConsoleSession> attach_console(const Spec&) const override { no_libvirt(); }
};

}  // namespace

const VmBackend& libvirt_backend() {
  static const NoLibvirtBackend backend;
  return backend;
}

}  // namespace sprout
