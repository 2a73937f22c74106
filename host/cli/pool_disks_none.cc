// pool_disks.h in a build without libvirt: no pool can be reached, so a spec in pool
// mode is refused where its volumes would be touched.
#include "cli/pool_disks.h"

#include <stdexcept>

#include <fmt/format.h>

namespace sprout {

namespace {
void refuse(const Spec& spec) {
  if (spec.libvirt_pool_mode())
    throw std::runtime_error(fmt::format("{}: its disks are volumes of libvirt storage pool {}, and this build of "
                                         "sprout has no libvirt support (rebuild with libvirt-dev installed)",
                                         spec.name, spec.libvirt_pool));
}
}  // namespace

std::filesystem::path volumes_record_path(const Spec& spec) { return spec.state_dir / "volumes.json"; }
std::vector<std::string> pool_disks_of(const Spec& spec) {
  refuse(spec);
  return {};
}
void delete_pool_disks(const Spec& spec) { refuse(spec); }
void gc_pools(const std::vector<Spec>& specs, bool) {
  for (const auto& s : specs) refuse(s);
}

}  // namespace sprout
