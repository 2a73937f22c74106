// VM names: they become file names, systemd instance names (sprout-vm@NAME) and
// libvirt domain names, so only a conservative set is accepted:
// 1-64 bytes of [A-Za-z0-9._-], not starting with '.' or '-'.
#pragma once

#include <string>
#include <string_view>

namespace sprout {

inline constexpr std::size_t kMaxVmNameBytes = 64;

/// Empty when `name` is acceptable, otherwise one sentence saying what is wrong.
std::string vm_name_problem(std::string_view name);

inline bool is_valid_vm_name(std::string_view name) { return vm_name_problem(name).empty(); }

}  // namespace sprout
