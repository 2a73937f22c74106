// The whole agent run against a fake guest tree: fake disks in /sys/block, a fake
// mounter, the manifest pre-placed at the self mount point, fake rebuild and
// reboot commands (shell scripts that record their arguments and act as told), the
// status port a plain file. "Rebooting" = the test pointing /run/current-system at
// the profile, as NixOS's boot would.
#include "agent.h"

#include <unistd.h>

#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

#include "manifest.h"
#include "status_protocol.h"
#include "test_tree.h"

using namespace sprout::agent;
using sprout::Phase;
using sprout::agent::testing::TempTree;

namespace {

class FakeMounter : public Mounter {
 public:
  std::vector<MountRequest> calls;
  bool explode = false;  ///< throw, as a broken library call might
  MountResult mount(const MountRequest& r) override {
    calls.push_back(r);
    if (explode) throw std::runtime_error("libmount blew up");
    return MountResult{true, false, ""};
  }
  std::map<std::string, std::string> options_of(const std::vector<std::string>& mps) override {
    std::map<std::string, std::string> out;
    for (const auto& m : mps) out[m] = "ro,nosuid,nodev";
    return out;
  }
};

struct Fixture : ::testing::Test {
  TempTree t;
  std::string gen = std::string(64, '1');
  int timeout_seconds = 60;
  int max_attempts = 3;
  bool respecialize_on_change = true;
  std::string mode = "classic";
  std::string system;  ///< host-built when set

  void SetUp() override {
    for (auto [name, serial] : {std::pair{"vda", "sprout-test-state"}, {"vdb", "sprout-config"}, {"vdc", "sprout-self"}}) {
      t.write(std::string("/sys/block/") + name + "/serial", std::string(serial) + "\n");
      t.write(std::string("/sys/block/") + name + "/ro", std::string(name) == "vda" ? "0\n" : "1\n");
      t.write(std::string("/dev/") + name, "");
    }
    t.write("/proc/sys/kernel/random/boot_id", "0b0b0b0b-0000-4000-8000-000000000001\n");
    t.symlink("/nix/store/base", "/run/current-system");
    t.write("/nix/store/base/name", "base");
    // The fake rebuild: records its argv; acts as /rebuild-mode says (ok, fail, sleep).
    std::string r = t.root().string();
    t.write("/bin/fake-rebuild",
            "#!/bin/sh\n"
            "echo \"$*\" >>" + r + "/rebuild-calls\n"
            "mode=$(cat " + r + "/rebuild-mode 2>/dev/null || echo ok)\n"
            "echo building the system configuration...\n"
            "echo 'some stderr' >&2\n"
            "case $mode in\n"
            "  fail) echo 'error: builder failed (told to)' >&2; exit 3 ;;\n"
            "  full) echo 'error: writing to file: No space left on device' >&2; exit 1 ;;\n"
            "  sleep) echo $$ >" + r + "/rebuild-pid; sleep 30; echo woke ;;\n"
            "esac\n"
            "n=$(cat " + r + "/rebuild-calls | wc -l)\n"
            "mkdir -p " + r + "/nix/store-built/sys-$n " + r + "/nix/var/nix/profiles\n"
            "ln -sfn /nix/store-built/sys-$n " + r + "/nix/var/nix/profiles/system-$n-link\n"
            "ln -sfn system-$n-link " + r + "/nix/var/nix/profiles/system\n"
            "echo /nix/store-built/sys-$n\n",
            true);
    t.write("/bin/fake-reboot", "#!/bin/sh\necho \"$*\" >>" + r + "/reboot-calls\n", true);
    write_manifest();
  }

  void write_manifest() {
    sprout::Manifest m;
    m.name = "web";
    m.generation = gen;
    m.config_digest = std::string(64, 'c');
    m.self_digest = std::string(64, 'd');
    m.rebuild.mode = mode;
    m.rebuild.target = mode == "flake" ? "/etc/nixos#web" : "/etc/nixos/hosts/self/configuration.nix";
    m.rebuild.extra_args = {"--show-trace"};
    m.rebuild.timeout_seconds = timeout_seconds;
    m.rebuild.max_attempts = max_attempts;
    m.rebuild.respecialize_on_change = respecialize_on_change;
    m.system = system;
    if (!system.empty()) m.closure_digest = std::string(64, 'e');
    t.write("/etc/nixos/hosts/self/sprout-manifest.json", m.to_json_text());
  }

  virtual AgentOptions options() {
    AgentOptions o;
    o.root = t.root();
    o.config.rebuild_command = {t.path("/bin/fake-rebuild").string(), "boot"};
    o.config.reboot_command = {t.path("/bin/fake-reboot").string(), "reboot"};
    o.config.disk_wait_seconds = 0.2;
    o.config.flush_timeout_seconds = 1;
    o.status_port_path = t.path("/status-port").string();
    return o;
  }

  // One boot: returns the exit status; events() has what it reported.
  int boot(int cancel_fd = -1, bool mounter_throws = false) {
    t.write("/status-port", "");
    FakeMounter m;
    m.explode = mounter_throws;
    auto o = options();
    o.cancel_fd = cancel_fd;
    int rc = run_agent(o, m);
    mounts = m.calls;
    return rc;
  }
  // What NixOS does on reboot: boot the default profile.
  void reboot() { t.symlink("/nix/var/nix/profiles/system", "/run/current-system"); }

  std::vector<sprout::StatusEvent> events() {
    std::vector<sprout::StatusEvent> out;
    std::string all = t.read("/status-port");
    std::size_t pos = 0;
    while (pos < all.size()) {
      auto nl = all.find('\n', pos);
      auto d = sprout::decode_status_line(all.substr(pos, nl - pos + 1));
      EXPECT_TRUE(d.event) << d.error;
      if (d.event) out.push_back(*d.event);
      pos = nl + 1;
    }
    return out;
  }
  std::vector<Phase> phases_without_log() {
    std::vector<Phase> p;
    for (auto& e : events())
      if (e.phase != Phase::log) p.push_back(e.phase);
    return p;
  }
  int count_lines(const std::string& guest) {
    auto s = t.read(guest);
    return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
  }
  std::vector<MountRequest> mounts;
};

}  // namespace

TEST_F(Fixture, FirstBootSpecializesThenSecondBootIsSpecialized) {
  ASSERT_EQ(boot(), 0);
  EXPECT_EQ(phases_without_log(), (std::vector<Phase>{Phase::starting, Phase::mounting, Phase::rebuilding,
                                                      Phase::rebuilt, Phase::rebooting}));
  auto ev = events();
  int logs = 0;
  for (auto& e : ev) {
    EXPECT_EQ(e.vm, "web");
    if (e.phase == Phase::log) ++logs;
  }
  EXPECT_GE(logs, 3);
  EXPECT_EQ(t.read("/rebuild-calls"),
            "boot -I nixos-config=/etc/nixos/hosts/self/configuration.nix --no-flake --show-trace\n");
  EXPECT_EQ(t.read("/reboot-calls"), "reboot\n");
  ASSERT_EQ(mounts.size(), 2u);
  EXPECT_EQ(mounts[0].device, "/dev/vdb");
  EXPECT_EQ(mounts[0].mount_point, "/etc/nixos");
  EXPECT_EQ(mounts[1].device, "/dev/vdc");
  EXPECT_EQ(mounts[1].mount_point, "/etc/nixos/hosts/self");
  EXPECT_NE(t.read("/var/lib/sprout/rebuild.log").find("some stderr"), std::string::npos);
  EXPECT_GE(count_lines("/var/lib/sprout/agent.log"), 5 + logs);

  reboot();
  ASSERT_EQ(boot(), 0);
  EXPECT_EQ(phases_without_log(), (std::vector<Phase>{Phase::starting, Phase::mounting, Phase::specialized}));
  auto sp = events().back();
  EXPECT_EQ(sp.detail["action"], "record-applied");
  for (auto k : {"find", "mount", "decide", "report", "total"}) EXPECT_TRUE(sp.detail["timingsMs"].contains(k)) << k;
  EXPECT_TRUE(sp.detail["cpuMs"].contains("total"));
  EXPECT_EQ(sp.detail["mounts"]["/etc/nixos"], "ro,nosuid,nodev");

  ASSERT_EQ(boot(), 0);
  EXPECT_EQ(events().back().detail["action"], "already-specialized");
  EXPECT_EQ(count_lines("/rebuild-calls"), 1);
  EXPECT_EQ(count_lines("/reboot-calls"), 1);
}

TEST_F(Fixture, RebuiltButBootedSomethingElseFailsWithoutLooping) {
  ASSERT_EQ(boot(), 0);
  // no reboot() into the new system
  EXPECT_EQ(boot(), 1);
  auto f = events().back();
  EXPECT_EQ(f.phase, Phase::failed);
  EXPECT_NE(f.message.find("/nix/store-built/sys-1"), std::string::npos);
  EXPECT_NE(f.message.find("/nix/store/base"), std::string::npos);
  EXPECT_EQ(boot(), 1);
  EXPECT_EQ(count_lines("/rebuild-calls"), 1);
  EXPECT_EQ(count_lines("/reboot-calls"), 1);
}

TEST_F(Fixture, FailingRebuildReportsOutputDoesNotRebootAndGivesUpAfterMaxAttempts) {
  t.write("/rebuild-mode", "fail");
  for (int attempt = 1; attempt <= 3; ++attempt) {
    EXPECT_EQ(boot(), 1);
    auto f = events().back();
    EXPECT_EQ(f.phase, Phase::failed);
    EXPECT_NE(f.message.find("exited with status 3"), std::string::npos) << f.message;
    EXPECT_NE(f.message.find("attempt " + std::to_string(attempt) + " of 3"), std::string::npos) << f.message;
    EXPECT_NE(f.detail["lastLines"].dump().find("builder failed (told to)"), std::string::npos);
  }
  EXPECT_EQ(boot(), 1);
  EXPECT_NE(events().back().message.find("gave up after 3 attempts"), std::string::npos);
  EXPECT_EQ(count_lines("/rebuild-calls"), 3);
  EXPECT_EQ(t.read("/reboot-calls"), "");
}

TEST_F(Fixture, AFullDiskIsSaidAsSuch) {
  t.write("/rebuild-mode", "full");
  EXPECT_EQ(boot(), 1);
  auto f = events().back();
  EXPECT_EQ(f.phase, Phase::failed);
  EXPECT_NE(f.message.find("the guest's disk is full"), std::string::npos) << f.message;
  EXPECT_NE(f.message.find("diskSize"), std::string::npos) << f.message;
}

TEST_F(Fixture, ChangedConfigRespecializesExactlyOnce) {
  ASSERT_EQ(boot(), 0);
  reboot();
  ASSERT_EQ(boot(), 0);
  gen = std::string(64, '2');
  write_manifest();
  ASSERT_EQ(boot(), 0);
  EXPECT_EQ(phases_without_log().back(), Phase::rebooting);
  EXPECT_NE(events()[2].message.find("changed"), std::string::npos);
  reboot();
  ASSERT_EQ(boot(), 0);
  ASSERT_EQ(boot(), 0);
  EXPECT_EQ(events().back().phase, Phase::specialized);
  EXPECT_EQ(count_lines("/rebuild-calls"), 2);
}

TEST_F(Fixture, KeepOldReportsTheGenerationRunningAndTheNewOneAsPending) {
  ASSERT_EQ(boot(), 0);
  reboot();
  ASSERT_EQ(boot(), 0);
  const std::string applied = gen;
  gen = std::string(64, '2');
  respecialize_on_change = false;
  write_manifest();
  ASSERT_EQ(boot(), 0);
  auto last = events().back();
  EXPECT_EQ(last.phase, Phase::specialized);
  EXPECT_EQ(last.detail["action"], "keep-old");
  // The generation named is the one the machine runs, never the one it did not apply.
  EXPECT_EQ(last.generation, applied);
  EXPECT_EQ(last.detail["pendingGeneration"], gen);
  EXPECT_EQ(count_lines("/rebuild-calls"), 1);
}

TEST_F(Fixture, RebuildTimeout) {
  timeout_seconds = 1;
  write_manifest();
  t.write("/rebuild-mode", "sleep");
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(boot(), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(15));
  auto f = events().back();
  EXPECT_EQ(f.phase, Phase::failed);
  EXPECT_NE(f.message.find("timed out"), std::string::npos) << f.message;
  EXPECT_EQ(f.detail["timedOut"], true);
  EXPECT_EQ(t.read("/reboot-calls"), "");
}

TEST_F(Fixture, SigtermStopsTheRebuildGroupAndReportsInterrupted) {
  t.write("/rebuild-mode", "sleep");
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  std::thread killer([&] {
    for (int i = 0; i < 100 && t.read("/rebuild-pid").empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    char c = 1;
    EXPECT_EQ(::write(p[1], &c, 1), 1);
  });
  auto t0 = std::chrono::steady_clock::now();
  int rc = boot(p[0]);
  killer.join();
  EXPECT_EQ(rc, 1);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(15));
  auto f = events().back();
  EXPECT_EQ(f.phase, Phase::failed);
  EXPECT_EQ(f.message, "interrupted");
  // The rebuild's process (the shell) is gone.
  int pid = std::atoi(t.read("/rebuild-pid").c_str());
  ASSERT_GT(pid, 0);
  EXPECT_NE(::kill(pid, 0), 0);
  EXPECT_EQ(t.read("/reboot-calls"), "");
  ::close(p[0]);
  ::close(p[1]);
}

TEST_F(Fixture, GarbledManifestIsAReportedFailure) {
  t.write("/etc/nixos/hosts/self/sprout-manifest.json", "{\"version\": 1, garbage");
  EXPECT_EQ(boot(), 1);
  auto f = events().back();
  EXPECT_EQ(f.phase, Phase::failed);
  EXPECT_EQ(f.vm, "unknown");
  EXPECT_NE(f.message.find("sprout-manifest.json"), std::string::npos) << f.message;
  EXPECT_EQ(t.read("/rebuild-calls"), "");
}

TEST_F(Fixture, GarbledStateFileIsNoStateAndReported) {
  t.write("/var/lib/sprout/state.json", "\x01\x02 not json");
  EXPECT_EQ(boot(), 0);
  auto ev = events();
  bool reported = false;
  for (auto& e : ev)
    if (e.phase == Phase::rebuilding) reported = e.detail.contains("stateProblem");
  EXPECT_TRUE(reported);
  EXPECT_EQ(count_lines("/rebuild-calls"), 1);
}

TEST_F(Fixture, MissingSelfDiskSaysWhichDisk) {
  std::filesystem::remove_all(t.path("/sys/block/vdc"));
  EXPECT_EQ(boot(), 1);
  auto f = events().back();
  EXPECT_EQ(f.phase, Phase::failed);
  EXPECT_NE(f.message.find("required disk 'self'"), std::string::npos) << f.message;
  EXPECT_EQ(f.detail["disk"], "self");
}

TEST_F(Fixture, AnUnexpectedErrorIsStillReportedAsFailed) {
  EXPECT_EQ(boot(-1, true), 1);
  auto f = events().back();
  EXPECT_EQ(f.phase, Phase::failed);
  EXPECT_NE(f.message.find("internal error: libmount blew up"), std::string::npos) << f.message;
}

TEST_F(Fixture, FlakeMode) {
  mode = "flake";
  write_manifest();
  ASSERT_EQ(boot(), 0);
  EXPECT_EQ(t.read("/rebuild-calls"), "boot --flake /etc/nixos#web --no-write-lock-file --show-trace\n");
}

TEST_F(Fixture, NoStatusPortWorksTheSame) {
  FakeMounter m;
  auto o = options();
  o.status_port_path.clear();  // and no /sys/class/virtio-ports in the tree
  EXPECT_EQ(run_agent(o, m), 0);
  EXPECT_NE(t.read("/var/lib/sprout/agent.log").find("\"rebooting\""), std::string::npos);
}

namespace {

// A host-built VM: the manifest names a system; the closure disk (vdd) is "mounted"
// at /run/sprout/closure (the fake mounter mounts nothing: its files are pre-placed);
// fake nix, nix-store and nix-env record their arguments, nix-env sets the profile;
// the system's own switch-to-configuration records that it ran.
struct HostBuilt : Fixture {
  const std::string sys = "/nix/store/4s6j5z57rq0xbzlxcp946k44a2f6097y-nixos-system-web";
  void SetUp() override {
    Fixture::SetUp();
    system = sys;
    write_manifest();
    t.write("/sys/block/vdd/serial", "sprout-closure\n");
    t.write("/sys/block/vdd/ro", "1\n");
    t.write("/dev/vdd", "");
    t.write("/run/sprout/closure/4s6j5z57rq0xbzlxcp946k44a2f6097y.narinfo", "StorePath: " + sys + "\n");
    std::string r = t.root().string();
    for (auto tool : {"nix", "nix-store", "nix-env"})
      t.write(std::string("/fake-nix/") + tool,
              "#!/bin/sh\n"
              "echo \"" + std::string(tool) + " $*\" >>" + r + "/nix-calls\n"
              "if [ \"$(cat " + r + "/nix-mode 2>/dev/null)\" = corrupt ] && [ " + tool + " = nix ]; then\n"
              "  echo \"error: hash mismatch importing path '" + sys + "';\" >&2; exit 1\n"
              "fi\n"
              "[ " + tool + " = nix-env ] && mkdir -p " + r + "/nix/var/nix/profiles && "
              "ln -sfn " + sys + " " + r + "/nix/var/nix/profiles/system-1-link && "
              "ln -sfn system-1-link " + r + "/nix/var/nix/profiles/system\n"
              "exit 0\n",
              true);
    // The import is the agent itself run again (`--import-closure`): a stand-in here
    // (closure_import_test.cc tests the import).
    t.write("/fake-import",
            "#!/bin/sh\n"
            "echo \"import $*\" >>" + r + "/nix-calls\n"
            "if [ \"$(cat " + r + "/nix-mode 2>/dev/null)\" = corrupt ]; then\n"
            "  echo \"error: hash mismatch importing path '" + sys + "';\" >&2; exit 1\n"
            "fi\n"
            "echo \"copying path '" + sys + "' from 'file:///run/sprout/closure'...\"\n",
            true);
    t.write(sys + "/bin/switch-to-configuration",
            "#!/bin/sh\necho \"switch-to-configuration $*\" >>" + r + "/nix-calls\necho updating GRUB 2 menu...\n", true);
  }
  AgentOptions options() override {
    AgentOptions o = Fixture::options();
    o.config.nix_bin_dir = t.path("/fake-nix").string();
    o.self_exe = t.path("/fake-import").string();
    return o;
  }
};

}  // namespace

TEST_F(HostBuilt, ImportsSwitchesRebootsThenIsSpecializedWithoutTheClosureDisk) {
  ASSERT_EQ(boot(), 0);
  EXPECT_EQ(phases_without_log(), (std::vector<Phase>{Phase::starting, Phase::mounting, Phase::rebuilding,
                                                      Phase::rebuilt, Phase::rebooting}));
  std::string nix = t.path("/fake-nix").string();
  EXPECT_EQ(t.read("/nix-calls"),
            "import --import-closure /run/sprout/closure --system " + sys + " --nix-bin-dir " + nix + " --root " +
                t.root().string() + "\nnix-store --check-validity " + sys + "\nnix-env -p /nix/var/nix/profiles/system --set " + sys +
                "\nswitch-to-configuration boot\n");
  EXPECT_FALSE(std::filesystem::exists(t.path("/rebuild-calls")));  // nixos-rebuild never ran
  EXPECT_EQ(t.read("/reboot-calls"), "reboot\n");
  ASSERT_EQ(mounts.size(), 3u);
  EXPECT_EQ(mounts[2].device, "/dev/vdd");
  EXPECT_EQ(mounts[2].mount_point, "/run/sprout/closure");
  EXPECT_TRUE(mounts[2].noexec);
  auto ev = events();
  auto rebuilding = *std::find_if(ev.begin(), ev.end(), [](auto& e) { return e.phase == Phase::rebuilding; });
  EXPECT_EQ(rebuilding.detail["specializedBy"], "host");
  EXPECT_EQ(rebuilding.detail["commands"].size(), 4u);
  EXPECT_NE(rebuilding.message.find("built by the host"), std::string::npos);
  bool streamed = false;
  for (auto& e : ev) streamed = streamed || (e.phase == Phase::log && e.message == "updating GRUB 2 menu...");
  EXPECT_TRUE(streamed) << "switch-to-configuration's output is a log event";
  auto rebuilt = *std::find_if(ev.begin(), ev.end(), [](auto& e) { return e.phase == Phase::rebuilt; });
  EXPECT_EQ(rebuilt.detail["system"], sys);
  EXPECT_NE(t.read("/var/lib/sprout/rebuild.log").find("updating GRUB 2 menu"), std::string::npos);

  reboot();
  ASSERT_EQ(boot(), 0);
  EXPECT_EQ(phases_without_log(), (std::vector<Phase>{Phase::starting, Phase::mounting, Phase::specialized}));
  auto sp = events().back();
  EXPECT_EQ(sp.detail["action"], "record-applied");
  EXPECT_EQ(sp.detail["specializedBy"], "host");
  EXPECT_EQ(sp.detail["currentSystem"], sys);
  EXPECT_EQ(mounts.size(), 2u) << "the fast path does not mount the closure disk";
  EXPECT_EQ(count_lines("/nix-calls"), 4);
}

TEST_F(HostBuilt, AMissingClosureDiskIsAFailureThatNamesIt) {
  std::filesystem::remove_all(t.path("/sys/block/vdd"));
  EXPECT_EQ(boot(), 1);
  auto f = events().back();
  EXPECT_EQ(f.phase, Phase::failed);
  EXPECT_NE(f.message.find("the closure disk (virtio serial sprout-closure"), std::string::npos) << f.message;
  EXPECT_NE(f.message.find(sys), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(t.path("/nix-calls")));
  EXPECT_FALSE(std::filesystem::exists(t.path("/reboot-calls")));
}

TEST_F(HostBuilt, AClosureDiskOfAnotherSystemRunsNothing) {
  std::filesystem::remove(t.path("/run/sprout/closure/4s6j5z57rq0xbzlxcp946k44a2f6097y.narinfo"));
  EXPECT_EQ(boot(), 1);
  auto f = events().back();
  EXPECT_NE(f.message.find("the closure disk does not hold " + sys), std::string::npos) << f.message;
  EXPECT_FALSE(std::filesystem::exists(t.path("/nix-calls")));
}

TEST_F(HostBuilt, AFailedImportIsReportedCountedAndDoesNotReboot) {
  t.write("/nix-mode", "corrupt");
  EXPECT_EQ(boot(), 1);
  auto f = events().back();
  EXPECT_EQ(f.phase, Phase::failed);
  EXPECT_NE(f.message.find("importing the closure: exited with status 1 (attempt 1 of 3)"), std::string::npos)
      << f.message;
  EXPECT_NE(f.detail["lastLines"].dump().find("hash mismatch importing path"), std::string::npos);
  EXPECT_EQ(count_lines("/nix-calls"), 1);  // nothing after the failed import
  EXPECT_FALSE(std::filesystem::exists(t.path("/reboot-calls")));
  EXPECT_EQ(boot(), 1);
  EXPECT_NE(events().back().message.find("attempt 2 of 3"), std::string::npos);
}
