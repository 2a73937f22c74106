// sprout-agent: runs inside every sprout VM at boot (a systemd service on NixOS).
// Finds the disks the host exports, mounts them read-only, and either reports that
// the machine is specialized or specializes it (nixos-rebuild boot, reboot). Flags
// and config keys: `sprout-agent --help`, docs/agent.md. Exit status: 0 specialized
// or rebooting, 1 failed (reported), 2 bad flags or config.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <iostream>

#include <cxxopts.hpp>
#include <spdlog/spdlog.h>

#include "agent.h"
#include "closure_import.h"
#include "early.h"
#include "error.h"
#include "log.h"
#include "option_error.h"
#include "root_path.h"
#include "version.h"

namespace {

int g_signal_pipe[2] = {-1, -1};

void on_signal(int) {
  int saved = errno;  // the interrupted code may be about to read errno
  char c = 1;
  ssize_t n = ::write(g_signal_pipe[1], &c, 1);
  (void)n;
  errno = saved;
}

const char* kHelpTail = R"(
Every boot:
  1. find the disks by virtio serial (/sys/block/*/serial: sprout-config, sprout-self,
     sprout-ssh), falling back to the ext4 label; wait at most diskWaitSeconds
  2. mount them ro,nosuid,nodev (ssh also noexec) at the configured mount points
  3. read sprout-manifest.json on the self disk and STATEDIR/state.json, compare
     with /run/current-system, and decide:
       already specialized to this generation -> report `specialized`, exit 0
       rebuilt before the last reboot, now running it -> record it, `specialized`
       rebuilt but not running it -> `failed` with both paths (no loop)
       attempts exhausted -> `failed: gave up after N attempts`
       otherwise (first boot, or a new generation) -> specialize
  4. specialize: record the attempt, run the rebuild command (+ -I nixos-config=TARGET
     or --flake TARGET, + extraArgs, from the manifest) with its timeout, stream its
     output as `log` events, then `rebuilt`, `rebooting`, flush, run rebootCommand
     A host-built VM (the manifest names a system) runs no rebuild: it mounts the
     closure disk, imports the closure (--import-closure), checks it, sets the system
     profile and runs the system's switch-to-configuration boot.
  SIGTERM stops the rebuild's process group and reports `failed: interrupted`.

--early (a unit of its own, before sshd): find the secrets disk (serial sprout-secrets,
  waiting at most 2 s or --disk-wait; none: nothing to do), mount it ro,nosuid,nodev,noexec, install the VM's ssh host key
  as /etc/ssh/ssh_host_ed25519_key, offer its secrets as /run/sprout/secrets/NAME
  (root only), compare /etc/machine-id with the host's, unmount it.

Status: JSON lines on the virtio-serial port named statusPort (found through
/sys/class/virtio-ports/*/name), never blocking; each event also goes to logFile.

Config file keys (JSON; a missing file means all defaults):
  version                  1 (required)
  mountPoints.config       default /etc/nixos
  mountPoints.self         default /etc/nixos/hosts/self
  mountPoints.ssh          default /root/.ssh; null: never mount the ssh disk
  mountPoints.closure      default /run/sprout/closure (host-built VMs: the closure disk)
  rebuild.command          default ["nixos-rebuild","boot"]
  rebuild.timeoutSeconds, rebuild.maxAttempts, rebuild.respecializeOnChange
                           defaults 3600, 3, true (the manifest's values win)
  rebootCommand            default ["systemctl","reboot"]
  stateDir                 default /var/lib/sprout (state.json, agent.log, rebuild.log)
  diskWaitSeconds          default 10
  flushTimeoutSeconds      default 10: how long to wait for a host to take status
  statusPort               default sprout.status.0
  logFile                  default STATEDIR/agent.log
  nixBinDir                host-built VMs: where nix-store and nix-env are (default: PATH)

Exit status: 0 specialized or rebooting, 1 failed (reported), 2 bad flags or config.
)";

}  // namespace

int main(int argc, char** argv) {
  using namespace sprout;
  ::signal(SIGCHLD, SIG_DFL);  // an inherited SIG_IGN would reap the rebuild for us
  cxxopts::Options opts("sprout-agent", std::string("sprout-agent ") + kVersion +
                                            ": sprout's guest agent: specializes this VM from the disks the host exports");
  opts.add_options()
    ("config", "the agent config file", cxxopts::value<std::string>()->default_value("/etc/sprout/agent.json"), "FILE")
    ("root", "prefix for every path the agent uses (sysfs, /dev, /proc, /run, profiles, state, mount points); "
             "for tests", cxxopts::value<std::string>()->default_value("/"), "DIR")
    ("status-port", "write status to this file or device instead of the port found by name (host path)",
     cxxopts::value<std::string>()->default_value(""), "PATH")
    ("disk-wait", "override diskWaitSeconds", cxxopts::value<double>(), "SECONDS")
    ("flush-timeout", "override flushTimeoutSeconds", cxxopts::value<double>(), "SECONDS")
    ("early", "early boot, before sshd: install this VM's ssh host key and secrets from its secrets disk, "
              "then exit (docs/agent.md)")
    ("import-closure", "host-built VMs: import SYSTEM's closure from the closure disk mounted at DIR into this "
                       "guest's Nix store, checking every NAR's hash first (docs/agent.md), then exit; the agent "
                       "runs this itself", cxxopts::value<std::string>(), "DIR")
    ("system", "with --import-closure: the system's store path", cxxopts::value<std::string>(), "PATH")
    ("nix-bin-dir", "with --import-closure: where nix-store is (default: PATH)",
     cxxopts::value<std::string>()->default_value(""), "DIR")
    ("log-level", "trace, debug, info, warn, error", cxxopts::value<std::string>()->default_value("info"), "LEVEL")
    ("version", "print the version")
    ("h,help", "this help");
  try {
    auto r = opts.parse(argc, argv);
    if (r.count("help")) {
      std::cout << opts.help() << kHelpTail;
      return kExitOk;
    }
    if (r.count("version")) {
      std::cout << "sprout-agent " << kVersion << "\n";
      return kExitOk;
    }
    if (!r.unmatched().empty()) {
      std::cerr << unexpected_argument("sprout-agent", r.unmatched().front()) << "\n";
      return kExitUsage;
    }
    setup_logging("sprout-agent", r["log-level"].as<std::string>(), /*colour=*/false);

    if (r.count("import-closure")) {
      if (!r.count("system")) {
        std::cerr << "sprout-agent: --import-closure needs --system PATH (the store path whose closure to import)\n";
        return kExitUsage;
      }
      agent::ClosureImport ci;
      ci.root = r["root"].as<std::string>();
      ci.closure_dir = r["import-closure"].as<std::string>();
      ci.system = r["system"].as<std::string>();
      ci.nix_bin_dir = r["nix-bin-dir"].as<std::string>();
      ci.on_line = [](std::string_view line) { std::cout << line << std::endl; };
      agent::ImportOutcome out = agent::import_closure(ci);
      for (const auto& line : out.error) std::cerr << line << "\n";
      return out.ok ? kExitOk : kExitFailure;
    }
    if (r.count("early")) {
      agent::EarlyOptions eo;
      eo.root = r["root"].as<std::string>();
      bool missing = false;
      const agent::AgentConfig cfg = agent::load_agent_config(r["config"].as<std::string>(), &missing);
      // Not diskWaitSeconds: this runs before sysinit.target, and a disk the host
      // attached was probed with the virtio driver in the initrd, before local-fs.target.
      // A guest without one (a host older than identities) must not wait long.
      const double wait =
          r.count("disk-wait") ? std::max(0.0, r["disk-wait"].as<double>()) : std::min(2.0, cfg.disk_wait_seconds);
      eo.disk_wait = std::chrono::milliseconds(static_cast<long long>(wait * 1000));
      agent::LibMounter mounter(eo.root);
      return agent::run_early(eo, mounter);
    }
    agent::AgentOptions o;
    o.root = r["root"].as<std::string>();
    o.config_path = r["config"].as<std::string>();
    o.config = agent::load_agent_config(o.config_path, &o.config_missing);
    // The file is optional (the help says so): its absence is no warning.
    if (o.config_missing) spdlog::debug("{}: no such file; using the defaults", o.config_path);
    if (r.count("disk-wait")) o.config.disk_wait_seconds = std::max(0.0, r["disk-wait"].as<double>());
    if (r.count("flush-timeout")) o.config.flush_timeout_seconds = std::max(0.0, r["flush-timeout"].as<double>());
    o.status_port_path = r["status-port"].as<std::string>();
    char self[4096];
    if (ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1); n > 0) o.self_exe.assign(self, n);

    ::signal(SIGPIPE, SIG_IGN);
    if (::pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) == 0) {
      struct sigaction sa {};
      sa.sa_handler = on_signal;
      sigemptyset(&sa.sa_mask);
      sa.sa_flags = SA_RESTART;
      sigaction(SIGTERM, &sa, nullptr);
      sigaction(SIGINT, &sa, nullptr);
      o.cancel_fd = g_signal_pipe[0];
    }
    agent::LibMounter mounter(o.root);
    return agent::run_agent(o, mounter);
  } catch (const cxxopts::exceptions::exception& e) {
    std::cerr << option_error("sprout-agent", e.what()) << "\n";
    return kExitUsage;
  } catch (const InputError& e) {
    std::cerr << "sprout-agent: " << e.what() << "\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "sprout-agent: " << e.what() << "\n";
    return kExitFailure;
  }
}
