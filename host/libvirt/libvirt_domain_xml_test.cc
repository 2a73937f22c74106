#include "libvirt/libvirt_domain_xml.h"

#include <gtest/gtest.h>

#include "error.h"

using namespace sprout;

namespace {

const char* kMinimal = R"({
  "version": 1, "name": "web", "backend": "libvirt",
  "base": {"image": "/nix/store/base.qcow2"},
  "stateDir": "/var/lib/sprout/vms/web",
  "sources": {"config": "/cfg", "self": "/cfg/hosts/web"}
})";

/// kMinimal with the keys of `key_json` (object members, without braces) replacing
/// or added to its own (a spec may not name a key twice).
Spec spec_with(const std::string& key_json = "") {
  auto doc = nlohmann::json::parse(kMinimal);
  if (!key_json.empty()) {
    auto extra = nlohmann::json::parse("{" + key_json + "}");
    for (auto& [k, v] : extra.items()) doc[k] = v;
  }
  return parse_spec(doc.dump(), "web.json", "/etc/sprout/vms");
}

bool has(const std::string& xml, const std::string& part) { return xml.find(part) != std::string::npos; }

}  // namespace

TEST(DomainXml, TypeFollowsKvm) {
  EXPECT_TRUE(has(domain_xml(spec_with(), {}), "<domain type='qemu'"));
  DomainHostFacts kvm;
  kvm.kvm = true;
  std::string x = domain_xml(spec_with(), kvm);
  EXPECT_TRUE(has(x, "<domain type='kvm'"));
  EXPECT_TRUE(has(x, "host-passthrough"));
}

TEST(DomainXml, StableUuid) {
  EXPECT_EQ(domain_uuid("web"), domain_uuid("web"));
  EXPECT_NE(domain_uuid("web"), domain_uuid("db"));
  std::string u = domain_uuid("web");
  ASSERT_EQ(u.size(), 36u);
  EXPECT_EQ(u[14], '8');  // version 8
  EXPECT_TRUE(has(domain_xml(spec_with(), {}), "<uuid>" + u + "</uuid>"));
}

TEST(DomainXml, MemoryVcpusAcpi) {
  std::string x = domain_xml(spec_with(R"("memory": {"amount": 3, "unit": "GiB"}, "vcpus": 4)"), {});
  EXPECT_TRUE(has(x, "<memory unit='KiB'>3145728</memory>"));
  EXPECT_TRUE(has(x, "<vcpu placement='static'>4</vcpu>"));
  EXPECT_TRUE(has(x, "<acpi/>"));
  // Bytes that are not whole KiB round up.
  x = domain_xml(spec_with(R"("memory": {"amount": 100000001, "unit": "b"})"), {});
  EXPECT_TRUE(has(x, "<memory unit='KiB'>97657</memory>"));
}

TEST(DomainXml, DisksAndChannel) {
  std::string x = domain_xml(spec_with(), {});
  EXPECT_TRUE(has(x, "<source file='/var/lib/sprout/vms/web/root.qcow2'/>"));
  EXPECT_TRUE(has(x, "<format type='qcow2'/>\n        <source file='/nix/store/base.qcow2'/>"));
  EXPECT_TRUE(has(x, "<source file='/var/lib/sprout/vms/web/config.img'/>"));
  EXPECT_TRUE(has(x, "<source file='/var/lib/sprout/vms/web/self.img'/>"));
  EXPECT_FALSE(has(x, "ssh.img"));
  EXPECT_TRUE(has(x, "<serial>sprout-config</serial>"));
  EXPECT_TRUE(has(x, "<serial>sprout-self</serial>"));
  std::size_t ro = 0;
  for (std::size_t p = 0; (p = x.find("<readonly/>", p)) != std::string::npos; ++p) ++ro;
  EXPECT_EQ(ro, 3u);  // config, self and the VM's own secrets disk
  EXPECT_TRUE(has(x, "<source file='/var/lib/sprout/vms/web/secrets.img'/>\n      <target dev='vdd' bus='virtio'/>\n"
                     "      <readonly/>\n      <serial>sprout-secrets</serial>"));
  EXPECT_FALSE(has(x, "closure.img"));  // guest-built: no closure disk
  EXPECT_FALSE(has(x, "sysinfo"));      // no machine-id given
  // The status channel's socket is libvirt's to place, on the domain's host: no path
  // of ours (`sprout watch` reads it through libvirt's API).
  EXPECT_TRUE(has(x, "<channel type='unix'>\n      <source mode='bind'/>\n"));
  EXPECT_FALSE(has(x, "status.sock"));
  EXPECT_TRUE(has(x, "<target type='virtio' name='sprout.status.0'/>"));
  EXPECT_TRUE(has(x, "<log file='/var/lib/sprout/vms/web/console.log' append='on'/>"));
  EXPECT_FALSE(has(x, "<graphics"));
  EXPECT_FALSE(has(x, "qemu:commandline"));

  x = domain_xml(spec_with(R"("specialize": "host", "system": "/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-s")"), {});
  EXPECT_TRUE(has(x, "<source file='/var/lib/sprout/vms/web/closure.img'/>\n      <target dev='vdd' bus='virtio'/>\n"
                     "      <readonly/>\n      <serial>sprout-closure</serial>"));

  x = domain_xml(spec_with(R"("sources": {"config": "/cfg", "self": "/s", "ssh": "/k"}, "vnc": true)"), {});
  EXPECT_TRUE(has(x, "ssh.img"));
  EXPECT_TRUE(has(x, "<graphics type='vnc'"));
}

TEST(DomainXml, MachineIdAsSystemdCredentialInSmbiosType11) {
  DomainHostFacts f;
  f.machine_id = "0123456789abcdef0123456789abcdef";
  std::string x = domain_xml(spec_with(), f);
  EXPECT_TRUE(has(x, "    <smbios mode='sysinfo'/>\n  </os>"));
  EXPECT_TRUE(has(x, "<sysinfo type='smbios'>\n    <oemStrings>\n      <entry>io.systemd.credential:system.machine_id="
                     "0123456789abcdef0123456789abcdef</entry>"));
}

TEST(DomainXml, BackingFromFacts) {
  DomainHostFacts f;
  f.backing = "/nix/store/old-base.raw";
  f.backing_format = "raw";
  std::string x = domain_xml(spec_with(), f);
  EXPECT_TRUE(has(x, "<format type='raw'/>\n        <source file='/nix/store/old-base.raw'/>"));
}

TEST(DomainXml, WithoutAKernelTheBootDiskAloneSaysWhatBoots) {
  std::string x = domain_xml(spec_with(), {});
  EXPECT_FALSE(has(x, "<boot dev=")) << "libvirt refuses it beside a device's boot order";
  EXPECT_TRUE(has(x, "<target dev='vda' bus='virtio'/>\n      <boot order='1'/>"));
  EXPECT_FALSE(has(x, "<kernel>"));
}

TEST(DomainXml, KernelBootEscaped) {
  std::string x = domain_xml(
      spec_with(R"("kernel": {"path": "/k/vmlinuz", "initrd": "/k/initrd&<x>'", "cmdline": "console=ttyS0 a=\"b\""})"),
      {});
  EXPECT_TRUE(has(x, "<kernel>/k/vmlinuz</kernel>"));
  EXPECT_TRUE(has(x, "<initrd>/k/initrd&amp;&lt;x&gt;&apos;</initrd>"));
  EXPECT_TRUE(has(x, "<cmdline>console=ttyS0 a=&quot;b&quot;</cmdline>"));
  EXPECT_FALSE(has(x, "<boot dev='hd'/>"));
}

TEST(DomainXml, Networks) {
  std::string x = domain_xml(spec_with(R"("network": {"mode": "libvirt", "libvirtNetwork": "lan"})"), {});
  EXPECT_TRUE(has(x, "<interface type='network'>"));
  EXPECT_TRUE(has(x, "<source network='lan'/>"));
  x = domain_xml(spec_with(R"("network": {"mode": "bridge", "bridge": "br7"})"), {});
  EXPECT_TRUE(has(x, "<source bridge='br7'/>"));
  x = domain_xml(spec_with(R"("network": {"mode": "none"})"), {});
  EXPECT_FALSE(has(x, "<interface"));
  x = domain_xml(spec_with(R"("network": {"mode": "user"})"), {});
  EXPECT_TRUE(has(x, "<interface type='user'>"));
  x = domain_xml(spec_with(R"("network": {"forwards": [{"hostPort": 10022, "guestPort": 22},
      {"protocol": "udp", "hostAddress": "127.0.0.1", "hostPort": 5353, "guestPort": 53}]},
      "qemuArgs": ["-smp", "1"])"),
                 {});
  EXPECT_FALSE(has(x, "<interface"));
  EXPECT_TRUE(has(x, "<qemu:arg value='user,id=sprout-net0,hostfwd=tcp:127.0.0.1:10022-:22,hostfwd=udp:127.0.0.1:5353-:53'/>"));
  EXPECT_TRUE(has(x, "<qemu:arg value='-smp'/>"));
  EXPECT_THROW(domain_xml(spec_with(R"("network": {"mode": "libvirt", "forwards": [{"hostPort": 1, "guestPort": 2}]})"), {}),
               InputError);
  EXPECT_THROW(domain_xml(spec_with(R"("network": {"forwards": [{"hostAddress": "1.2.3.4,x", "hostPort": 1, "guestPort": 2}]})"), {}),
               InputError);
}

TEST(DomainXml, DigestIsDeterministicAndTracksChanges) {
  std::string a = domain_xml(spec_with(), {});
  std::string d = embedded_digest(a);
  ASSERT_EQ(d.size(), 64u);
  EXPECT_EQ(a, domain_xml(spec_with(), {}));
  EXPECT_NE(d, embedded_digest(domain_xml(spec_with(R"("vcpus": 2)"), {})));
  EXPECT_EQ(embedded_digest("<domain/>"), "");
  // libvirt re-serializes metadata with its own prefix choice: still found.
  EXPECT_EQ(embedded_digest("<x:digest>" + d + "</x:digest>"), d);
}

TEST(DomainXml, OwnQemuUidLabelsOwnDisksAndLeavesSharedOnes) {
  // Without a uid: no label, libvirt's default (its qemu user owns every disk).
  std::string x = domain_xml(spec_with(), {});
  EXPECT_FALSE(has(x, "seclabel"));
  DomainHostFacts facts;
  facts.qemu_uid = 1936719872 + 5;
  x = domain_xml(spec_with(), facts);
  EXPECT_TRUE(has(x, "  </devices>\n  <seclabel type='static' model='dac' relabel='yes'>\n"
                     "    <label>+1936719877:+1936719877</label>\n  </seclabel>\n"));
  // Where /dev/kvm is open to its group alone, that group is the gid.
  DomainHostFacts with_gid = facts;
  with_gid.qemu_gid = 993;
  EXPECT_TRUE(has(domain_xml(spec_with(), with_gid), "    <label>+1936719877:+993</label>\n"));
  // The overlay and the secrets disk are the VM's: relabelled (no per-disk label).
  EXPECT_TRUE(has(x, "<source file='/var/lib/sprout/vms/web/root.qcow2'/>\n"));
  EXPECT_TRUE(has(x, "<source file='/var/lib/sprout/vms/web/secrets.img'/>\n"));
  // The base and the cached images are shared: libvirt leaves them alone.
  EXPECT_TRUE(has(x, "        <source file='/nix/store/base.qcow2'>\n"
                     "          <seclabel model='dac' relabel='no'/>\n        </source>\n"));
  for (const char* role : {"config", "self"})
    EXPECT_TRUE(has(x, std::string("      <source file='/var/lib/sprout/vms/web/") + role +
                           ".img'>\n        <seclabel model='dac' relabel='no'/>\n      </source>\n"))
        << role;
  // Three: base, config, self.
  std::size_t n = 0;
  for (auto at = x.find("relabel='no'"); at != std::string::npos; at = x.find("relabel='no'", at + 1)) ++n;
  EXPECT_EQ(n, 3u);
  // The uid is part of the definition: another uid is a changed domain.
  DomainHostFacts other = facts;
  other.qemu_uid = *facts.qemu_uid + 1;
  EXPECT_NE(embedded_digest(x), embedded_digest(domain_xml(spec_with(), other)));
}

TEST(DomainXml, PoolModeNamesVolumes) {
  DomainHostFacts f;
  PoolVolumes v;
  v.pool = "sprout";
  v.overlay = "web@root.qcow2";
  v.backing_path = "/var/lib/sprout/pool/base-0123.qcow2";
  v.backing_format = "qcow2";
  v.disks = {{DiskRole::config, "config-aa.ext4"}, {DiskRole::self, "self-bb.ext4"},
             {DiskRole::secrets, "web@secrets-cc.img"}};
  f.volumes = v;
  const std::string x = domain_xml(spec_with(), f);
  EXPECT_TRUE(has(x, "<disk type='volume' device='disk'>\n      <driver name='qemu' type='qcow2' discard='unmap'/>\n"
                     "      <source pool='sprout' volume='web@root.qcow2'/>"));
  EXPECT_TRUE(has(x, "<source file='/var/lib/sprout/pool/base-0123.qcow2'/>"));
  EXPECT_TRUE(has(x, "<source pool='sprout' volume='config-aa.ext4'/>\n      <target dev='vdb' bus='virtio'/>\n"
                     "      <readonly/>\n      <serial>sprout-config</serial>"));
  EXPECT_TRUE(has(x, "<source pool='sprout' volume='web@secrets-cc.img'/>\n      <target dev='vdd'"));
  EXPECT_FALSE(has(x, "<disk type='file'"));
  EXPECT_FALSE(has(x, "/var/lib/sprout/vms/web/root.qcow2"));
  // The digest covers the volumes: another pool is another definition.
  f.volumes->pool = "other";
  EXPECT_NE(embedded_digest(x), embedded_digest(domain_xml(spec_with(), f)));
}
