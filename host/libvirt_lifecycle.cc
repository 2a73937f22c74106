#include "libvirt_lifecycle.h"

#include <chrono>
#include <stdexcept>

#include <fmt/format.h>

#include "libvirt_connection.h"

namespace sprout {

std::optional<bool> libvirt_domain_active(const std::string& uri, const std::string& name) {
  try {
    LibvirtConnection conn(uri);
    auto d = conn.lookup(name);
    return d && d->is_active();
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

std::string libvirt_stop(const Spec& spec) {
  LibvirtConnection conn(spec.libvirt_uri);
  auto d = conn.lookup(spec.name);
  if (!d) return fmt::format("not defined at {}", conn.uri());
  require_defined_by_sprout(*d, conn.uri(), "stopping");
  return d->stop(std::chrono::seconds(spec.shutdown_timeout_seconds));
}

std::string libvirt_undefine(const Spec& spec) {
  LibvirtConnection conn(spec.libvirt_uri);
  auto d = conn.lookup(spec.name);
  if (!d) return fmt::format("not defined at {}", conn.uri());
  require_defined_by_sprout(*d, conn.uri(), "undefining");
  std::string how = d->stop(std::chrono::seconds(spec.shutdown_timeout_seconds));
  if (d->is_persistent()) d->undefine(kSproutUndefineFlags);
  return fmt::format("{}, then undefined at {}", how, conn.uri());
}

}  // namespace sprout
