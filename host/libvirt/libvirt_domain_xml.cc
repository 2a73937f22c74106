#include "libvirt/libvirt_domain_xml.h"

#include <array>
#include <regex>

#include <fmt/format.h>

#include "disk_role.h"
#include "error.h"
#include "base/sha256.h"
#include "status_protocol.h"

namespace fs = std::filesystem;

namespace sprout {

namespace {

constexpr std::string_view kDigestMarker = "@@SPROUT-DIGEST@@";

// qemu creates the devices of <qemu:commandline> before some of libvirt's, so one
// without an address can take a PCI slot libvirt assigned: the NIC of user-mode
// forwards gets a fixed slot at the end of the (i440fx, libvirt's default) bus.
constexpr const char* kForwardNicPciSlot = "0x1e";

std::string esc(const fs::path& p) { return xml_escape(p.string()); }

// qemu's hostfwd takes "proto:addr:hport-:gport"; the address must not carry
// separators of its own.
void check_host_address(const std::string& addr) {
  static const std::regex ipv4(R"(^(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1?[0-9]?[0-9])){3}$)");
  if (!addr.empty() && !std::regex_match(addr, ipv4))
    throw InputError(fmt::format("network.forwards: hostAddress \"{}\" is not an IPv4 address (user-mode "
                                 "forwards with the libvirt backend are qemu hostfwd rules)",
                                 addr));
}

void add_network(const Spec& spec, std::string& dev, std::vector<std::string>& qemu_args) {
  const auto& n = spec.network;
  const std::string mac = xml_escape(n.mac);
  if (n.mode == NetworkMode::none) return;
  if (n.mode == NetworkMode::libvirt) {
    if (!n.forwards.empty())
      throw InputError(fmt::format("spec {}: network.forwards cannot be used with network.mode \"libvirt\" "
                                   "(a libvirt network has no per-VM port forwards); use mode \"user\" or "
                                   "forward on the host",
                                   spec.file.string()));
    dev += fmt::format(
        "    <interface type='network'>\n      <mac address='{}'/>\n      <source network='{}'/>\n"
        "      <model type='virtio'/>\n    </interface>\n",
        mac, xml_escape(n.libvirt_network));
  } else if (n.mode == NetworkMode::bridge) {
    dev += fmt::format(
        "    <interface type='bridge'>\n      <mac address='{}'/>\n      <source bridge='{}'/>\n"
        "      <model type='virtio'/>\n    </interface>\n",
        mac, xml_escape(n.bridge));
  } else if (n.forwards.empty()) {  // user mode, nothing forwarded: libvirt's own SLIRP interface
    dev += fmt::format("    <interface type='user'>\n      <mac address='{}'/>\n      <model type='virtio'/>\n"
                       "    </interface>\n",
                       mac);
  } else {
    // libvirt 9.0 has <portForward> only for the passt backend (not in Debian 12's
    // default install), so forwards go to qemu directly: a user netdev with hostfwd
    // rules and its NIC, through the qemu namespace (<qemu:commandline>).
    std::string netdev = "user,id=sprout-net0";
    for (const auto& f : n.forwards) {
      check_host_address(f.host_address);
      netdev += fmt::format(",hostfwd={}:{}:{}-:{}", f.protocol, f.host_address, f.host_port, f.guest_port);
    }
    qemu_args.insert(qemu_args.end(), {"-netdev", netdev, "-device",
                                       fmt::format("virtio-net-pci,netdev=sprout-net0,mac={},bus=pci.0,addr={}", n.mac,
                                                   kForwardNicPciSlot)});
  }
}

/// The domain's opening tag, name, UUID, description and sprout's metadata (its
/// digest a marker, replaced once the whole document is known).
std::string identity_xml(const Spec& spec, const DomainHostFacts& facts) {
  const std::string type = facts.kvm ? "kvm" : "qemu";
  std::string x;
  x += fmt::format("<domain type='{}' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n", type);
  x += fmt::format("  <name>{}</name>\n", xml_escape(spec.name));
  x += fmt::format("  <uuid>{}</uuid>\n", domain_uuid(spec.name));
  x += fmt::format("  <description>sprout VM {}; defined by `sprout define` from {}. Edit the spec, not this "
                   "domain: the next define replaces changes made here.</description>\n",
                   xml_escape(spec.name), esc(spec.file));
  x += "  <metadata>\n";
  x += fmt::format("    <{0}:vm xmlns:{0}='{1}'>\n", kLibvirtMetadataPrefix, kLibvirtMetadataUri);
  x += fmt::format("      <{0}:spec>{1}</{0}:spec>\n", kLibvirtMetadataPrefix, esc(spec.file));
  x += fmt::format("      <{0}:stateDir>{1}</{0}:stateDir>\n", kLibvirtMetadataPrefix, esc(spec.state_dir));
  x += fmt::format("      <{0}:digest>{1}</{0}:digest>\n", kLibvirtMetadataPrefix, kDigestMarker);
  x += fmt::format("    </{}:vm>\n", kLibvirtMetadataPrefix);
  x += "  </metadata>\n";
  return x;
}

/// Memory, vCPUs, <os> (the boot), features, CPU, clock and the lifecycle actions.
std::string machine_xml(const Spec& spec, const DomainHostFacts& facts) {
  std::string x;
  const std::uint64_t kib = (spec.memory_bytes + 1023) / 1024;
  x += fmt::format("  <memory unit='KiB'>{}</memory>\n  <currentMemory unit='KiB'>{}</currentMemory>\n", kib, kib);
  x += fmt::format("  <vcpu placement='static'>{}</vcpu>\n", spec.vcpus);
  x += "  <os>\n    <type arch='x86_64'>hvm</type>\n";
  if (spec.kernel) {
    x += fmt::format("    <kernel>{}</kernel>\n", esc(spec.kernel->kernel));
    if (spec.kernel->initrd) x += fmt::format("    <initrd>{}</initrd>\n", esc(*spec.kernel->initrd));
    x += fmt::format("    <cmdline>{}</cmdline>\n", xml_escape(spec.kernel->cmdline));
  }
  // Without a kernel the boot disk's own <boot order='1'/> says what boots: libvirt
  // refuses it beside an <os><boot dev=.../> ("per-device boot elements cannot be used
  // together with os/boot elements").
  if (!facts.machine_id.empty()) x += "    <smbios mode='sysinfo'/>\n";
  x += "  </os>\n  <features>\n    <acpi/>\n  </features>\n";
  if (facts.kvm) x += "  <cpu mode='host-passthrough' check='none'/>\n";
  if (!facts.machine_id.empty())
    x += fmt::format("  <sysinfo type='smbios'>\n    <oemStrings>\n"
                     "      <entry>io.systemd.credential:system.machine_id={}</entry>\n"
                     "    </oemStrings>\n  </sysinfo>\n",
                     xml_escape(facts.machine_id));
  x += "  <clock offset='utc'/>\n";
  x += "  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  <on_crash>destroy</on_crash>\n";
  return x;
}

/// Pool mode: the same disks as volumes of the pool. The overlay's backing chain is
/// spelled out (the base volume's file on the daemon's host), as for files.
std::string volume_disks_xml(const PoolVolumes& v) {
  std::string dev;
  const std::string pool = xml_escape(v.pool);
  dev += "    <disk type='volume' device='disk'>\n";
  dev += "      <driver name='qemu' type='qcow2' discard='unmap'/>\n";
  dev += fmt::format("      <source pool='{}' volume='{}'/>\n", pool, xml_escape(v.overlay));
  dev += fmt::format("      <backingStore type='file'>\n        <format type='{}'/>\n"
                     "        <source file='{}'/>\n        <backingStore/>\n      </backingStore>\n",
                     xml_escape(v.backing_format), xml_escape(v.backing_path));
  dev += "      <target dev='vda' bus='virtio'/>\n      <boot order='1'/>\n    </disk>\n";
  char letter = 'b';
  for (const auto& [role, volume] : v.disks) {
    dev += "    <disk type='volume' device='disk'>\n      <driver name='qemu' type='raw'/>\n";
    dev += fmt::format("      <source pool='{}' volume='{}'/>\n", pool, xml_escape(volume));
    dev += fmt::format("      <target dev='vd{}' bus='virtio'/>\n      <readonly/>\n      <serial>{}</serial>\n",
                       letter++, xml_escape(role_info(role).serial));
    dev += "    </disk>\n";
  }
  return dev;
}

/// The <disk> devices: the boot disk, then the exported disks.
std::string disks_xml(const Spec& spec, const DomainHostFacts& facts) {
  if (facts.volumes) return volume_disks_xml(*facts.volumes);
  std::string dev;
  // The boot disk: the VM's overlay, with its backing chain spelled out so libvirt
  // neither probes formats nor guesses (and labels the base read-only).
  // A shared disk's source: libvirt leaves it as it is when the VM has a uid of its own.
  const std::string keep = facts.qemu_uid ? "<seclabel model='dac' relabel='no'/>" : "";
  auto shared_source = [&](const fs::path& file, const std::string& indent) {
    if (keep.empty()) return fmt::format("{}<source file='{}'/>\n", indent, esc(file));
    return fmt::format("{0}<source file='{1}'>\n{0}  {2}\n{0}</source>\n", indent, esc(file), keep);
  };
  const fs::path backing = facts.backing.value_or(spec.base_image);
  const std::string backing_format = facts.backing_format.value_or(spec.base_format);
  dev += "    <disk type='file' device='disk'>\n";
  dev += "      <driver name='qemu' type='qcow2' discard='unmap'/>\n";
  dev += fmt::format("      <source file='{}'/>\n", esc(spec.overlay_path()));
  dev += fmt::format("      <backingStore type='file'>\n        <format type='{}'/>\n{}"
                     "        <backingStore/>\n      </backingStore>\n",
                     xml_escape(backing_format), shared_source(backing, "        "));
  dev += "      <target dev='vda' bus='virtio'/>\n      <boot order='1'/>\n    </disk>\n";
  // The exported disks, read-only, found in the guest by their virtio serials.
  char letter = 'b';
  for (const auto& info : disk_roles()) {
    if (info.role == DiskRole::ssh && !spec.ssh_source) continue;
    if (info.role == DiskRole::closure && !spec.host_built()) continue;
    dev += "    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n";
    // The secrets disk is the VM's own (in its state directory); the others are
    // cached images other VMs may use too.
    if (info.role == DiskRole::secrets)
      dev += fmt::format("      <source file='{}'/>\n", esc(spec.exported_image(info.name)));
    else
      dev += shared_source(spec.exported_image(info.name), "      ");
    dev += fmt::format("      <target dev='vd{}' bus='virtio'/>\n      <readonly/>\n      <serial>{}</serial>\n",
                       letter++, xml_escape(info.serial));
    dev += "    </disk>\n";
  }
  return dev;
}

/// The console (a serial pty) and the status channel.
std::string console_and_channel_xml(const Spec& spec) {
  // Console: the first serial port, a pty (so `virsh console` works) logged to the
  // state directory by virtlogd.
  std::string dev;
  dev += fmt::format("    <serial type='pty'>\n      <log file='{}' append='on'/>\n      <target port='0'/>\n"
                     "    </serial>\n    <console type='pty'>\n      <target type='serial' port='0'/>\n"
                     "    </console>\n",
                     esc(spec.console_log()));
  // The status channel: a virtio-serial port on a unix socket whose path libvirt
  // chooses on the domain's host (its channel directory, open only to the domain's
  // qemu). `sprout watch` reads it through libvirt's API (virDomainOpenChannel), so
  // the path never has to exist here: the domain may run on another host.
  dev += fmt::format("    <channel type='unix'>\n      <source mode='bind'/>\n"
                     "      <target type='virtio' name='{}'/>\n    </channel>\n",
                     xml_escape(kStatusPortName));
  return dev;
}

/// VNC and video when asked for, the balloon and the RNG.
std::string peripherals_xml(const Spec& spec) {
  std::string dev;
  if (spec.vnc) {
    dev += "    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>\n"
           "      <listen type='address' address='127.0.0.1'/>\n    </graphics>\n"
           "    <video>\n      <model type='virtio' heads='1' primary='yes'/>\n    </video>\n";
  }
  dev += "    <memballoon model='virtio'/>\n";
  dev += "    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n    </rng>\n";
  return dev;
}

/// <qemu:commandline> with `args`, or nothing when there are none.
std::string qemu_commandline_xml(const std::vector<std::string>& args) {
  if (args.empty()) return "";
  std::string x = "  <qemu:commandline>\n";
  for (const auto& a : args) x += fmt::format("    <qemu:arg value='{}'/>\n", xml_escape(a));
  x += "  </qemu:commandline>\n";
  return x;
}

}  // namespace

std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '\'': out += "&apos;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string domain_uuid(std::string_view vm_name) {
  Sha256 h;
  h.update(std::string_view("sprout libvirt domain uuid\n"));
  h.update(vm_name);
  auto d = h.finish();
  d[6] = static_cast<std::uint8_t>((d[6] & 0x0f) | 0x80);  // version 8 (custom)
  d[8] = static_cast<std::uint8_t>((d[8] & 0x3f) | 0x80);  // RFC variant
  std::string hex = to_hex(d.data(), 16);
  return fmt::format("{}-{}-{}-{}-{}", hex.substr(0, 8), hex.substr(8, 4), hex.substr(12, 4), hex.substr(16, 4),
                     hex.substr(20, 12));
}

std::string embedded_digest(std::string_view xml) {
  static const std::regex re(R"(<(?:[A-Za-z_][\w.-]*:)?digest>([0-9a-f]{64})</(?:[A-Za-z_][\w.-]*:)?digest>)");
  std::match_results<std::string_view::const_iterator> m;
  if (std::regex_search(xml.begin(), xml.end(), m, re)) return m[1].str();
  return "";
}

std::string domain_xml(const Spec& spec, const DomainHostFacts& facts) {
  std::vector<std::string> qemu_args;
  std::string x = identity_xml(spec, facts);
  x += machine_xml(spec, facts);
  std::string dev = disks_xml(spec, facts);
  add_network(spec, dev, qemu_args);
  dev += console_and_channel_xml(spec);
  dev += peripherals_xml(spec);
  x += "  <devices>\n" + dev + "  </devices>\n";
  if (facts.qemu_uid)
    x += fmt::format("  <seclabel type='static' model='dac' relabel='yes'>\n    <label>+{}:+{}</label>\n"
                     "  </seclabel>\n",
                     *facts.qemu_uid, facts.qemu_gid.value_or(*facts.qemu_uid));
  qemu_args.insert(qemu_args.end(), spec.qemu_args.begin(), spec.qemu_args.end());
  x += qemu_commandline_xml(qemu_args);
  x += "</domain>\n";

  const std::string digest = sha256_hex(x);
  x.replace(x.find(kDigestMarker), kDigestMarker.size(), digest);
  return x;
}

}  // namespace sprout
