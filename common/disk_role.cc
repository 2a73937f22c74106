#include "disk_role.h"

namespace sprout {

namespace {
constexpr std::array<DiskRoleInfo, 5> kRoles{{
    {DiskRole::config, "config", "sprout-config", "sprout-config", "/etc/nixos", true},
    {DiskRole::self, "self", "sprout-self", "sprout-self", "/etc/nixos/hosts/self", true},
    {DiskRole::ssh, "ssh", "sprout-ssh", "sprout-ssh", "/root/.ssh", false},
    {DiskRole::closure, "closure", "sprout-closure", "sprout-closure", "/run/sprout/closure", false},
    {DiskRole::secrets, "secrets", "sprout-secrets", "sprout-secrets", "/run/sprout/secrets-disk", false},
}};

static_assert([] {
  for (const auto& r : kRoles)
    if (r.serial.size() > kMaxVirtioSerialBytes || r.label.size() > kMaxExt4LabelBytes) return false;
  return true;
}());
}  // namespace

const std::array<DiskRoleInfo, 5>& disk_roles() { return kRoles; }

const DiskRoleInfo& role_info(DiskRole role) { return kRoles[static_cast<std::size_t>(role)]; }

std::optional<DiskRole> disk_role_from_name(std::string_view name) {
  for (const auto& r : kRoles)
    if (r.name == name) return r.role;
  return std::nullopt;
}

}  // namespace sprout
