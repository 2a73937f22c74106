#include "runtime/qemu_command.h"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include "error.h"
#include "status_protocol.h"

namespace sprout {

namespace {

// qemu's option parser splits on ',' and reads ',,' as a literal comma.
std::string qemu_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

}  // namespace

void check_qemu_can_run(const Spec& spec) {
  if (spec.network.mode == NetworkMode::libvirt)
    throw InputError(fmt::format("{}: network.mode \"libvirt\" needs backend \"libvirt\"; `sprout run` "
                                 "supports \"user\", \"bridge\" and \"none\"",
                                 spec.file.string()));
  // Status channel and QMP: unix sockets, whose paths the kernel limits to 107 bytes.
  for (const auto& sock : {spec.status_socket(), spec.qmp_socket(), spec.console_socket()})
    if (sock.string().size() > 107)
      throw InputError(fmt::format("{}: stateDir {} is too long for its unix sockets ({} is {} bytes; the limit is "
                                   "107): use a shorter state directory",
                                   spec.file.string(), spec.state_dir.string(), sock.string(), sock.string().size()));
}

std::vector<std::string> build_qemu_command(const Spec& spec, const QemuEnvironment& env) {
  check_qemu_can_run(spec);
  std::vector<std::string> a{env.qemu_binary};
  auto add = [&](std::initializer_list<std::string> xs) { a.insert(a.end(), xs.begin(), xs.end()); };

  add({"-name", fmt::format("guest={},debug-threads=on", qemu_escape(spec.name))});
  add({"-nodefaults", "-no-user-config"});
  for (const auto& x : env.confinement) a.push_back(x);
  if (env.kvm)
    add({"-accel", "kvm", "-cpu", "host"});
  else
    add({"-accel", "tcg"});
  add({"-m", fmt::format("{}M", spec.memory_mib()), "-smp", std::to_string(spec.vcpus)});

  // Boot disk: the VM's own overlay on the shared base (bootindex 1: with -kernel,
  // the direct-boot loader holds bootindex 0).
  add({"-drive", fmt::format("file={},if=none,format=qcow2,id=root,discard=unmap", qemu_escape(spec.overlay_path().string())),
       "-device", "virtio-blk-pci,drive=root,bootindex=1"});
  // Exported disks: read-only, found by the guest through their serials.
  for (const auto& [role, path] : env.disks) {
    const auto& info = role_info(role);
    std::string id = fmt::format("sprout-{}", info.name);
    add({"-drive", fmt::format("file={},if=none,readonly=on,format=raw,id={}", qemu_escape(path.string()), id),
         "-device", fmt::format("virtio-blk-pci,drive={},serial={}", id, info.serial)});
  }

  // The machine-id as systemd's credential (systemd.system-credentials(7)): not a
  // secret, so the command line may carry it.
  if (!env.machine_id.empty())
    add({"-smbios", fmt::format("type=11,value=io.systemd.credential:system.machine_id={}", env.machine_id)});

  if (spec.kernel) {
    add({"-kernel", spec.kernel->kernel.string()});
    if (spec.kernel->initrd) add({"-initrd", spec.kernel->initrd->string()});
    if (!spec.kernel->cmdline.empty()) add({"-append", spec.kernel->cmdline});
  }

  // Console: the first serial port, on a unix socket for `sprout console` and logged,
  // whoever is attached or not, to a file in the state directory (qemu drops what no
  // client reads but logs all of it).
  add({"-chardev", fmt::format("socket,id=console,path={},server=on,wait=off,logfile={},logappend=on",
                               qemu_escape(spec.console_socket().string()), qemu_escape(spec.console_log().string())),
       "-serial", "chardev:console"});
  if (spec.vnc)
    add({"-device", "VGA", "-vnc", "127.0.0.1:0,to=99"});
  else
    add({"-display", "none"});

  // Network.
  const auto& net = spec.network;
  switch (net.mode) {
    case NetworkMode::user: {
      std::string netdev = "user,id=net0";
      for (const auto& f : net.forwards)
        netdev += fmt::format(",hostfwd={}:{}:{}-:{}", f.protocol, f.host_address, f.host_port, f.guest_port);
      add({"-netdev", netdev, "-device", fmt::format("virtio-net-pci,netdev=net0,mac={}", net.mac)});
      break;
    }
    case NetworkMode::bridge:
      // qemu-bridge-helper makes a tap device and adds it to the bridge
      // (/etc/qemu/bridge.conf must allow the bridge).
      add({"-netdev", fmt::format("bridge,id=net0,br={}", qemu_escape(net.bridge)), "-device",
           fmt::format("virtio-net-pci,netdev=net0,mac={}", net.mac)});
      break;
    case NetworkMode::libvirt: break;  // refused by check_qemu_can_run
    case NetworkMode::none: break;  // no NIC (-nodefaults)
  }

  add({"-device", "virtio-serial-pci,id=sprout-vser",
       "-chardev", fmt::format("socket,id=sprout-status,path={},server=on,wait={}",
                               qemu_escape(spec.status_socket().string()), env.status_wait_for_reader ? "on" : "off"),
       "-device", fmt::format("virtserialport,bus=sprout-vser.0,chardev=sprout-status,name={}", kStatusPortName)});
  add({"-qmp", fmt::format("unix:{},server=on,wait=off", qemu_escape(spec.qmp_socket().string()))});

  for (const auto& x : spec.qemu_args) a.push_back(x);
  return a;
}

}  // namespace sprout
