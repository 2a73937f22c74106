// A build without libvirt cannot ask it, nor stop or undefine its domains.
#include "libvirt_lifecycle.h"

#include <stdexcept>

namespace sprout {

namespace {
[[noreturn]] void no_libvirt() {
  throw std::runtime_error("this build of sprout has no libvirt support (it was built without libvirt-dev; rebuild "
                           "with libvirt-dev installed, meson option -Dlibvirt=enabled)");
}
}  // namespace

std::optional<bool> libvirt_domain_active(const std::string&, const std::string&) { return std::nullopt; }
std::string libvirt_stop(const Spec&) { no_libvirt(); }
std::string libvirt_undefine(const Spec&) { no_libvirt(); }

}  // namespace sprout
