// A sprout VM's libvirt domain, for the commands that are not libvirt-only (status,
// wait, stop, destroy): whether it runs, stopping it gracefully, undefining it. Only
// domains sprout defined (they carry its metadata) are stopped or undefined. In a
// build without libvirt, domain_active says nothing and the others throw saying so.
#pragma once

#include <optional>
#include <string>

#include "spec.h"

namespace sprout {

/// Whether the domain runs; nothing when libvirt cannot be asked.
std::optional<bool> libvirt_domain_active(const std::string& uri, const std::string& name);

/// ACPI shutdown, the spec's shutdownTimeoutSeconds, then destroy. Returns what
/// happened ("not defined", "not running", "shut down", "destroyed"). Throws for a
/// domain sprout did not define.
std::string libvirt_stop(const Spec& spec);

/// libvirt_stop, then undefine (disks and NVRAM/TPM state kept). Returns what happened.
std::string libvirt_undefine(const Spec& spec);

}  // namespace sprout
