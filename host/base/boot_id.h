// This host's boot: what tells one boot of the machine from the next (a KVM verdict
// kept in /run, a libvirt domain's run after libvirt numbered domains afresh).
#pragma once

#include <string>

namespace sprout {

/// This boot's id (/proc/sys/kernel/random/boot_id), "" when unreadable.
std::string host_boot_id();

}  // namespace sprout
