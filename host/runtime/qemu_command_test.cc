#include "runtime/qemu_command.h"

#include <algorithm>

#include <gtest/gtest.h>

#include "error.h"

namespace sprout {
namespace {

Spec spec_from(const std::string& extra) {
  std::string text = R"({"version": 1, "name": "web", "base": {"image": "/b/base.qcow2"}, "stateDir": "/s/web",
    "sources": {"config": "/c", "self": "/c/hosts/web"})" + extra + "}";
  return parse_spec(text, "test.json", "/etc/sprout/vms");
}

// The value following `flag` at its n-th occurrence.
std::vector<std::string> values(const std::vector<std::string>& a, const std::string& flag) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i + 1 < a.size(); ++i)
    if (a[i] == flag) out.push_back(a[i + 1]);
  return out;
}
bool has(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

TEST(QemuCommand, BootDiskExportedDisksMemoryTcg) {
  Spec s = spec_from(R"(, "memory": 512, "vcpus": 2)");
  QemuEnvironment env;
  env.disks = {{DiskRole::config, "/s/web/config.img"}, {DiskRole::self, "/s/web/self.img"}};
  auto a = build_qemu_command(s, env);
  EXPECT_EQ(a[0], "qemu-system-x86_64");
  auto drives = values(a, "-drive");
  ASSERT_EQ(drives.size(), 3u);
  EXPECT_EQ(drives[0], "file=/s/web/root.qcow2,if=none,format=qcow2,id=root,discard=unmap");
  EXPECT_EQ(drives[1], "file=/s/web/config.img,if=none,readonly=on,format=raw,id=sprout-config");
  EXPECT_EQ(drives[2], "file=/s/web/self.img,if=none,readonly=on,format=raw,id=sprout-self");
  auto devices = values(a, "-device");
  EXPECT_TRUE(has(devices, "virtio-blk-pci,drive=root,bootindex=1"));
  EXPECT_TRUE(has(devices, "virtio-blk-pci,drive=sprout-config,serial=sprout-config"));
  EXPECT_TRUE(has(devices, "virtio-blk-pci,drive=sprout-self,serial=sprout-self"));
  EXPECT_EQ(values(a, "-m"), std::vector<std::string>{"512M"});
  EXPECT_EQ(values(a, "-smp"), std::vector<std::string>{"2"});
  EXPECT_EQ(values(a, "-accel"), std::vector<std::string>{"tcg"});
  EXPECT_FALSE(has(a, "-no-reboot"));  // a guest reboot restarts in place
  EXPECT_TRUE(has(a, "-nodefaults"));
}

TEST(QemuCommand, MachineIdAsSystemdCredentialInSmbiosType11) {
  EXPECT_TRUE(values(build_qemu_command(spec_from(""), {}), "-smbios").empty());
  QemuEnvironment env;
  env.machine_id = "0123456789abcdef0123456789abcdef";
  EXPECT_EQ(values(build_qemu_command(spec_from(""), env), "-smbios"),
            std::vector<std::string>{"type=11,value=io.systemd.credential:system.machine_id=0123456789abcdef0123456789abcdef"});
}

TEST(QemuCommand, KvmUsesHostCpu) {
  QemuEnvironment env;
  env.kvm = true;
  auto a = build_qemu_command(spec_from(""), env);
  EXPECT_EQ(values(a, "-accel"), std::vector<std::string>{"kvm"});
  EXPECT_EQ(values(a, "-cpu"), std::vector<std::string>{"host"});
}

TEST(QemuCommand, StatusChannelQmpAndConsole) {
  auto a = build_qemu_command(spec_from(""), {});
  auto chardevs = values(a, "-chardev");
  EXPECT_TRUE(has(chardevs, "socket,id=sprout-status,path=/s/web/status.sock,server=on,wait=on"));
  EXPECT_TRUE(has(chardevs, "socket,id=console,path=/s/web/console.sock,server=on,wait=off,logfile=/s/web/console.log,"
                            "logappend=on"));
  EXPECT_TRUE(has(values(a, "-device"), "virtserialport,bus=sprout-vser.0,chardev=sprout-status,name=sprout.status.0"));
  EXPECT_EQ(values(a, "-qmp"), std::vector<std::string>{"unix:/s/web/qmp.sock,server=on,wait=off"});
  EXPECT_EQ(values(a, "-serial"), std::vector<std::string>{"chardev:console"});
  QemuEnvironment ext;
  ext.status_wait_for_reader = false;
  EXPECT_TRUE(has(values(build_qemu_command(spec_from(""), ext), "-chardev"),
                  "socket,id=sprout-status,path=/s/web/status.sock,server=on,wait=off"));
}

TEST(QemuCommand, KernelBoot) {
  auto a = build_qemu_command(spec_from(R"(, "kernel": {"path": "/k/vmlinuz", "initrd": "/k/initrd", "cmdline": "console=ttyS0 x=1"})"), {});
  EXPECT_EQ(values(a, "-kernel"), std::vector<std::string>{"/k/vmlinuz"});
  EXPECT_EQ(values(a, "-initrd"), std::vector<std::string>{"/k/initrd"});
  EXPECT_EQ(values(a, "-append"), std::vector<std::string>{"console=ttyS0 x=1"});
  auto b = build_qemu_command(spec_from(R"(, "kernel": {"path": "/k/vmlinuz", "initrd": null})"), {});
  EXPECT_TRUE(values(b, "-initrd").empty());
  EXPECT_TRUE(values(b, "-append").empty());
  EXPECT_TRUE(values(build_qemu_command(spec_from(""), {}), "-kernel").empty());
}

TEST(QemuCommand, UserNetworkForwards) {
  auto a = build_qemu_command(spec_from(R"(, "network": {"mode": "user", "mac": "52:54:00:aa:bb:cc", "forwards": [
      {"hostPort": 10022, "guestPort": 22}, {"protocol": "udp", "hostAddress": "127.0.0.1", "hostPort": 5353, "guestPort": 53}]})"), {});
  EXPECT_EQ(values(a, "-netdev"),
            std::vector<std::string>{"user,id=net0,hostfwd=tcp:127.0.0.1:10022-:22,hostfwd=udp:127.0.0.1:5353-:53"});
  EXPECT_TRUE(has(values(a, "-device"), "virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:cc"));
}

TEST(QemuCommand, BridgeNoneAndLibvirt) {
  auto a = build_qemu_command(spec_from(R"(, "network": {"mode": "bridge", "bridge": "br1"})"), {});
  EXPECT_EQ(values(a, "-netdev"), std::vector<std::string>{"bridge,id=net0,br=br1"});
  auto n = build_qemu_command(spec_from(R"(, "network": {"mode": "none"})"), {});
  EXPECT_TRUE(values(n, "-netdev").empty());
  EXPECT_THROW(build_qemu_command(spec_from(R"(, "network": {"mode": "libvirt"})"), {}), InputError);
}

TEST(QemuCommand, ExtraArgsLastAndCommasEscaped) {
  Spec s = spec_from(R"(, "qemuArgs": ["-global", "virtio-blk-pci.x=1"])");
  s.state_dir = "/s/we,b";
  auto a = build_qemu_command(s, {});
  ASSERT_GE(a.size(), 2u);
  EXPECT_EQ(a[a.size() - 2], "-global");
  EXPECT_EQ(a.back(), "virtio-blk-pci.x=1");
  EXPECT_EQ(values(a, "-drive")[0], "file=/s/we,,b/root.qcow2,if=none,format=qcow2,id=root,discard=unmap");
}

TEST(QemuCommand, Vnc) {
  auto a = build_qemu_command(spec_from(R"(, "vnc": true)"), {});
  EXPECT_EQ(values(a, "-vnc"), std::vector<std::string>{"127.0.0.1:0,to=99"});
  EXPECT_TRUE(values(a, "-display").empty());
}

TEST(QemuCommand, StateDirTooLongForSocketsIsAnInputError) {
  std::string dir = "/" + std::string(120, 'd');
  std::string text = R"({"version": 1, "name": "web", "base": {"image": "/b/base.qcow2"}, "stateDir": ")" + dir +
                     R"(", "sources": {"config": "/c", "self": "/c/hosts/web"}})";
  Spec s = parse_spec(text, "test.json", "/etc/sprout/vms");
  QemuEnvironment env;
  try {
    build_qemu_command(s, env);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("too long for its unix sockets"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sprout
