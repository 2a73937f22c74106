// sprout domain-xml: print the libvirt domain XML for a spec. Needs no libvirt
// library and no running daemon, and nothing the spec names has to exist.
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include <fmt/format.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "identity/vm_identity.h"
#include "error.h"
#include "runtime/kvm_probe.h"
#include "libvirt/libvirt_domain_xml.h"
#include "libvirt/libvirt_disk_access.h"
#include "runtime/vm_uid_registry.h"
#include "disk/overlay.h"
#include "spec/spec.h"
#include "cli/vm_locator.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

void domain_xml_options(cxxopts::Options& o) {
  o.add_options()(
      "type", "domain type: auto, kvm or qemu", cxxopts::value<std::string>()->default_value("auto"), "TYPE");
}

}  // namespace

int cmd_domain_xml(const Invocation& inv) {
  const auto& a = inv.args;
  Spec spec = *inv.vm;
  DomainHostFacts facts;
  const auto type = a["type"].as<std::string>();
  if (type == "auto")
    facts.kvm = choose_accel(spec.accel, "qemu-system-x86_64").kvm;
  else if (type == "kvm" || type == "qemu")
    facts.kvm = type == "kvm";
  else
    throw InputError(fmt::format("--type {}: expected auto, kvm or qemu", type));
  // The VM's machine-id once it has one (its first prepare mints it); nothing is minted here.
  if (auto id = read_identity(spec.state())) facts.machine_id = id->machine_id;
  std::error_code ec;
  if (fs::is_regular_file(spec.overlay_path(), ec)) {
    auto info = inspect_image(spec.overlay_path());
    if (info.backing) {
      facts.backing = info.backing;
      facts.backing_format = info.backing_format;
    }
  }
  // The uid `define` recorded for the VM (none is assigned here).
  if (vm_uid_applies(spec)) {
    facts.qemu_uid = host_vm_uid_registry().recorded(spec.name, spec.state_dir);
    if (facts.qemu_uid) facts.qemu_gid = kvm_gid_for(facts.kvm);
  }
  std::cout << domain_xml(spec, facts) << std::flush;
  return 0;
}

const Command kDomainXmlCommand = {"domain-xml", "print the libvirt domain XML for a VM",
    "Print the libvirt domain XML `sprout define` would define for a VM spec.\n"
    "Domain type kvm when the spec's accel is \"kvm\", or \"auto\" and a probe guest ran under KVM\n"
    "here (`sprout check-host`), else qemu (override with --type).\n"
    "When the VM's overlay exists, its real backing file is used, as define does; when define\n"
    "recorded a uid for the VM's qemu, the XML runs qemu as it.",
    Needs::one_vm, domain_xml_options, cmd_domain_xml};

}  // namespace sprout
