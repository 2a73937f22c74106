#include "spec/spec.h"

#include <gtest/gtest.h>

#include "error.h"

using namespace sprout;

namespace {

const char* kMinimal = R"({
  "version": 1, "name": "web",
  "base": {"image": "/nix/store/base.qcow2"},
  "stateDir": "/var/lib/sprout/vms/web",
  "sources": {"config": "/cfg", "self": "/cfg/hosts/web"}
})";

std::string with(const std::string& key_json) {
  std::string s = kMinimal;
  s.insert(s.rfind('}'), ", " + key_json);
  return s;
}

std::string error_of(const std::string& text) {
  try {
    parse_spec(text, "web.json", "/etc/sprout/vms");
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Spec, MinimalGetsDefaults) {
  Spec s = parse_spec(kMinimal, "web.json", "/etc");
  EXPECT_EQ(s.name, "web");
  EXPECT_EQ(s.base_format, "qcow2");
  EXPECT_EQ(s.memory_bytes, 1024ull << 20);
  EXPECT_EQ(s.vcpus, 1);
  EXPECT_EQ(s.backend, Backend::qemu);
  EXPECT_EQ(s.rebuild.mode, "classic");
  EXPECT_EQ(s.rebuild.target, "/etc/nixos/hosts/self/configuration.nix");
  EXPECT_EQ(s.rebuild.max_attempts, 3);
  EXPECT_EQ(s.base_change, BaseChange::keep);
  EXPECT_EQ(s.ready, Ready::specialized);
  EXPECT_FALSE(s.ssh_source.has_value());
  EXPECT_EQ(s.network.mode, NetworkMode::user);
  EXPECT_EQ(s.network.mac.substr(0, 9), "52:54:00:");
  EXPECT_EQ(s.overlay_path(), "/var/lib/sprout/vms/web/root.qcow2");
  EXPECT_EQ(s.cache_dir, kDefaultCacheDir);
}

TEST(Spec, EveryKey) {
  Spec s = parse_spec(with(R"(
    "cacheDir": "cache", "gcRootDir": "/tmp/gc",
    "memory": {"amount": 2, "unit": "GiB"}, "vcpus": 4, "diskSize": {"amount": 20, "unit": "G"},
    "rebuild": {"mode": "flake", "extraArgs": ["--show-trace"], "timeoutSeconds": 60, "maxAttempts": 1,
                "respecializeOnChange": false},
    "backend": "libvirt", "libvirt": {"uri": "qemu:///session"},
    "network": {"mode": "user", "forwards": [{"hostPort": 10022, "guestPort": 22}], "mac": "52:54:00:aa:bb:cc"},
    "kernel": {"path": "k", "initrd": "i", "cmdline": "console=ttyS0"},
    "qemuArgs": ["-smp", "2"], "accel": "tcg", "vnc": true, "baseChange": "rebase", "ready": "started",
    "shutdownTimeoutSeconds": 5, "restartOnChange": true, "autostart": false)"),
                      "web.json", "/etc/sprout/vms");
  EXPECT_EQ(s.cache_dir, "/etc/sprout/vms/cache");
  EXPECT_EQ(s.memory_bytes, 2ull << 30);
  EXPECT_EQ(s.disk_size_bytes, 20ull << 30);
  EXPECT_EQ(s.rebuild.target, "/etc/nixos#self");
  EXPECT_EQ(s.rebuild.extra_args, std::vector<std::string>{"--show-trace"});
  EXPECT_FALSE(s.rebuild.respecialize_on_change);
  EXPECT_EQ(s.libvirt_uri, "qemu:///session");
  ASSERT_EQ(s.network.forwards.size(), 1u);
  EXPECT_EQ(s.network.forwards[0].protocol, "tcp");
  EXPECT_EQ(s.network.forwards[0].host_port, 10022);
  EXPECT_EQ(s.network.mac, "52:54:00:aa:bb:cc");
  ASSERT_TRUE(s.kernel);
  EXPECT_EQ(s.kernel->kernel, "/etc/sprout/vms/k");
  EXPECT_EQ(s.kernel->initrd, "/etc/sprout/vms/i");
  EXPECT_EQ(s.qemu_args.size(), 2u);
  EXPECT_EQ(s.accel, Accel::tcg);
  EXPECT_TRUE(s.vnc);
  EXPECT_EQ(s.shutdown_timeout_seconds, 5);
  EXPECT_FALSE(s.autostart);
}

TEST(Spec, AccelIsAutoKvmOrTcg) {
  EXPECT_EQ(parse_spec(kMinimal, "web.json", "/").accel, Accel::automatic);
  EXPECT_EQ(parse_spec(with(R"("accel": "kvm")"), "web.json", "/").accel, Accel::kvm);
  EXPECT_STREQ(name_of(Accel::automatic), "auto");
  try {
    parse_spec(with(R"("accel": "hvf")"), "web.json", "/");
    FAIL() << "accel hvf accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("accel"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("\"tcg\""), std::string::npos) << e.what();
  }
}

TEST(Spec, QemuUserIsDynamicRootOrAName) {
  EXPECT_EQ(parse_spec(kMinimal, "web.json", "/").qemu_user, "dynamic");
  EXPECT_EQ(parse_spec(with(R"("qemuUser": "sprout-qemu")"), "web.json", "/").qemu_user, "sprout-qemu");
  EXPECT_EQ(parse_spec(with(R"("qemuUser": "root")"), "web.json", "/").qemu_user, "root");
  for (const char* bad : {R"("qemuUser": "")", R"("qemuUser": "Bob")", R"("qemuUser": "a b")", R"("qemuUser": "1000")",
                          R"("qemuUser": "x/../y")", R"("qemuUser": 0)"}) {
    try {
      parse_spec(with(bad), "web.json", "/");
      ADD_FAILURE() << bad << " accepted";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("qemuUser"), std::string::npos) << e.what();
    }
  }
  try {
    parse_spec(with(R"("qemuArgs": ["-runas", "0:0"])"), "web.json", "/");
    ADD_FAILURE() << "-runas in qemuArgs accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("would undo the confinement"), std::string::npos) << e.what();
  }
  try {
    parse_spec(with(R"("backend": "libvirt", "qemuUser": "root")"), "web.json", "/");
    FAIL() << "qemuUser accepted for a libvirt VM";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("qemu.conf"), std::string::npos) << e.what();
  }
}

TEST(Spec, EveryPartIsCheckedInOneRun) {
  try {
    parse_spec(with(R"("vcpus": 0, "network": {"mode": "warp"}, "memroy": 1)"), "web.json", "/etc/sprout/vms");
    ADD_FAILURE() << "accepted";
  } catch (const SpecProblems& e) {
    ASSERT_EQ(e.problems.size(), 3u) << e.what();
    EXPECT_NE(e.problems[0].find("vcpus"), std::string::npos);
    EXPECT_NE(e.problems[1].find("network.mode"), std::string::npos);
    EXPECT_NE(e.problems[2].find("did you mean \"memory\""), std::string::npos);
    EXPECT_EQ(std::string(e.what()), e.problems[0] + "\n" + e.problems[1] + "\n" + e.problems[2]);
  }
}

TEST(Spec, MemoryAsPlainMiB) {
  EXPECT_EQ(parse_spec(with(R"("memory": 512)"), "s", "/").memory_bytes, 512ull << 20);
  EXPECT_EQ(parse_spec(with(R"("memory": {"amount": 1000000, "unit": "KB"})"), "s", "/").memory_bytes,
            1000000000ull);
}

TEST(Spec, MalformedSpecsNameFileKeyAndExpectation) {
  struct Case {
    std::string text, expected;
  } cases[] = {
      {"{", "web.json: not valid JSON"},
      {"[]", "web.json: top level: expected an object, got a list"},
      {with(R"("memroy": 1)"), "web.json: memroy: unknown key (did you mean \"memory\"?)"},
      {with(R"("vcpu": 1)"), "web.json: vcpu: unknown key (did you mean \"vcpus\"?)"},
      {with(R"("zzzzzzzz": 1)"), "web.json: zzzzzzzz: unknown key (check its spelling against the documentation)"},
      {with(R"("vcpus": "2")"), "web.json: vcpus: expected an integer from 1 to 256, got the string \"2\""},
      {with(R"("vcpus": 0)"), "web.json: vcpus: expected an integer from 1 to 256, got the number 0"},
      {with(R"("memory": {"amount": 2, "unit": "gigs"})"), "web.json: memory.unit: expected one of"},
      {with(R"("memory": "lots")"), "web.json: memory: expected a number of MiB"},
      {with(R"("memory": {"amount": 1, "unit": "MiB"})"), "web.json: memory: must be at least 64 MiB"},
      {with(R"("backend": "xen")"), "web.json: backend: expected \"qemu\" or \"libvirt\""},
      {with(R"("network": {"forwards": [{"hostPort": 70000, "guestPort": 22}]})"),
       "web.json: network.forwards[0].hostPort: expected an integer from 1 to 65535"},
      {with(R"("network": {"mode": "bridge", "forwards": [{"hostPort": 1, "guestPort": 2}]})"),
       "web.json: network.forwards: port forwards need network.mode \"user\""},
      {with(R"("network": {"mac": "zz"})"), "web.json: network.mac: expected a MAC address"},
      {with(R"("rebuild": {"extraArgs": "--x"})"), "web.json: rebuild.extraArgs: expected a list"},
      {with(R"("baseChange": "delete")"), "web.json: baseChange: expected \"keep\", \"rebase\" or \"recreate\""},
      {R"({"version": 2})", "web.json: version: this sprout reads spec version 1, the file has 2"},
      {R"({"version": 1, "name": "../x"})", "web.json: name: a VM name must not contain '/'"},
      {R"({"version": 1, "name": "x", "base": {}})", "web.json: base.image: expected a string, got nothing"},
      {R"({"version": 1, "name": "x", "base": {"image": ""}})", "web.json: base.image: expected a non-empty path"},
  };
  for (const auto& c : cases) {
    auto msg = error_of(c.text);
    EXPECT_EQ(msg.rfind(c.expected, 0), 0u) << "got: " << msg << "\nwanted prefix: " << c.expected;
  }
}

TEST(Spec, MacIsStablePerName) {
  EXPECT_EQ(mac_for_name("web"), mac_for_name("web"));
  EXPECT_NE(mac_for_name("web"), mac_for_name("db"));
}

TEST(Spec, MissingFileIsInputError) {
  EXPECT_THROW(load_spec("/nonexistent/spec.json"), InputError);
}

TEST(Spec, HostBuiltSystem) {
  const std::string sys = "/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-nixos-system-web";
  const std::string base = "/nix/store/9ykcfql8b7811yf3sgrij9ahyfplya1x-nixos-system-base";
  Spec g = parse_spec(kMinimal, "web.json", "/etc");
  EXPECT_FALSE(g.host_built());
  Spec h = parse_spec(with(R"("specialize": "host", "system": ")" + sys + R"(", "baseSystem": ")" + base + "\""),
                      "web.json", "/etc");
  EXPECT_TRUE(h.host_built());
  EXPECT_EQ(h.system, sys);
  EXPECT_EQ(h.base_system, base);
  Spec no_base = parse_spec(with(R"("specialize": "host", "system": ")" + sys + R"(", "baseSystem": null)"),
                            "web.json", "/etc");
  EXPECT_EQ(no_base.base_system, "");
}

TEST(Spec, HostBuiltSystemIsValidated) {
  const std::string sys = "/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-nixos-system-web";
  EXPECT_NE(error_of(with(R"("specialize": "host")")).find("web.json: system: \"specialize\": \"host\" needs"),
            std::string::npos);
  EXPECT_NE(error_of(with(R"("system": ")" + sys + "\"")).find("system: is only used with \"specialize\": \"host\""),
            std::string::npos);
  EXPECT_NE(error_of(with(R"("specialize": "both")")).find("specialize: expected \"guest\" or \"host\""), std::string::npos);
  auto e = error_of(with(R"("specialize": "host", "system": "/etc/nixos")"));
  EXPECT_NE(e.find("system: /etc/nixos is not in /nix/store"), std::string::npos) << e;
  e = error_of(with(R"("specialize": "host", "system": ")" + sys + R"(/bin")"));
  EXPECT_NE(e.find("inside a store object"), std::string::npos) << e;
  EXPECT_NE(error_of(with(R"("specialize": "host", "system": 7)")).find("system: expected a string"),
            std::string::npos);
}

TEST(Spec, AHostPortIsForwardedOnce) {
  auto e = error_of(with(R"("network": {"forwards": [{"hostPort": 8080, "guestPort": 80},
                                                     {"hostPort": 8080, "guestPort": 81}]})"));
  EXPECT_NE(e.find("network.forwards[1].hostPort: tcp port 8080 is already forwarded by network.forwards[0]"),
            std::string::npos)
      << e;
  // "" (every address) overlaps a given one; another address, or udp, does not clash.
  EXPECT_NE(error_of(with(R"("network": {"forwards": [{"hostAddress": "127.0.0.1", "hostPort": 8080, "guestPort": 80},
                                                      {"hostPort": 8080, "guestPort": 81}]})"))
                .find("already forwarded"),
            std::string::npos);
  Spec ok = parse_spec(with(R"("network": {"forwards": [{"hostAddress": "127.0.0.1", "hostPort": 8080, "guestPort": 80},
                                                         {"hostAddress": "127.0.0.2", "hostPort": 8080, "guestPort": 81},
                                                         {"protocol": "udp", "hostAddress": "127.0.0.1", "hostPort": 8080, "guestPort": 82}]})"),
                       "web.json", "/etc");
  EXPECT_EQ(ok.network.forwards.size(), 3u);
}

TEST(Spec, LibvirtStorageFollowsTheUriUnlessNamed) {
  Spec local = parse_spec(with(R"("backend": "libvirt", "libvirt": {"uri": "qemu:///system"})"), "web.json", "/");
  EXPECT_EQ(local.libvirt_storage, LibvirtStorage::files);
  EXPECT_FALSE(local.libvirt_pool_mode());
  Spec remote = parse_spec(with(R"("backend": "libvirt", "libvirt": {"uri": "qemu+ssh://h/system"})"), "web.json", "/");
  EXPECT_EQ(remote.libvirt_storage, LibvirtStorage::pool);
  EXPECT_TRUE(remote.libvirt_pool_mode());
  EXPECT_EQ(remote.libvirt_pool, "sprout");
  EXPECT_EQ(remote.libvirt_pool_path, "/var/lib/sprout/pool");
  Spec named = parse_spec(with(R"("backend": "libvirt", "libvirt": {"storage": "pool", "pool": "vms",
                                  "poolPath": "/srv/pool"})"),
                          "web.json", "/");
  EXPECT_TRUE(named.libvirt_pool_mode());
  EXPECT_EQ(named.libvirt_pool, "vms");
  EXPECT_EQ(named.libvirt_pool_path, "/srv/pool");
  Spec files = parse_spec(with(R"("backend": "libvirt", "libvirt": {"uri": "qemu+ssh://h/system", "storage": "files"})"),
                          "web.json", "/");
  EXPECT_FALSE(files.libvirt_pool_mode());
  EXPECT_NE(error_of(with(R"("backend": "libvirt", "libvirt": {"storage": "volumes"})")).find("libvirt.storage"),
            std::string::npos);
  EXPECT_NE(error_of(with(R"("backend": "libvirt", "libvirt": {"pool": "a/b"})")).find("libvirt.pool"),
            std::string::npos);
  EXPECT_NE(error_of(with(R"("backend": "libvirt", "libvirt": {"poolPath": "pool"})")).find("libvirt.poolPath"),
            std::string::npos);
}
