// Benchmark (not a test): the agent's already-specialized boot path (find, mount,
// decide, report) against a fake guest tree, mounts excluded (a fake mounter), many
// iterations in one process. Prints CPU and wall time per run (mean, median, p95)
// and the agent's own step timings from the last `specialized` event.
//   usage: agent_fast_path [ITERATIONS]
// Figures: docs/performance.md, "Guest agent: the already-specialized boot".
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "agent.h"
#include "agent_state.h"
#include "manifest.h"
#include "spdlog/spdlog.h"

using namespace sprout::agent;
namespace fs = std::filesystem;

namespace {
class NoMounts : public Mounter {
 public:
  MountResult mount(const MountRequest&) override { return {true, true, ""}; }
  std::map<std::string, std::string> options_of(const std::vector<std::string>& mps) override {
    std::map<std::string, std::string> m;
    for (auto& p : mps) m[p] = "ro,nosuid,nodev";
    return m;
  }
};
void put(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << s;
}
double cpu_ms() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 + ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3;
}
void stats(const char* what, std::vector<double> v) {
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  std::printf("%-5s mean %.3f ms  median %.3f ms  p95 %.3f ms  max %.3f ms\n", what, sum / v.size(), v[v.size() / 2],
              v[v.size() * 95 / 100], v.back());
}
}  // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::atoi(argv[1]) : 2000;
  char tmpl[] = "/tmp/sprout-agent-bench-XXXXXX";
  fs::path root = ::mkdtemp(tmpl);
  // A guest tree like the test VM's: a state disk and three exported disks, a
  // virtio port (a file here), the manifest, a state file saying "applied".
  int i = 0;
  for (auto serial : {"sprout-test-state", "sprout-config", "sprout-self", "sprout-ssh"}) {
    std::string name = std::string("vd") + char('a' + i++);
    put(root / "sys/block" / name / "serial", std::string(serial) + "\n");
    put(root / "sys/block" / name / "ro", "1\n");
    put(root / "dev" / name, "");
  }
  put(root / "proc/sys/kernel/random/boot_id", "0b0b0b0b-0000-4000-8000-000000000001\n");
  put(root / "nix/store-built/x-nixos-system-web-1/name", "web");
  fs::create_directories(root / "nix/var/nix/profiles");
  fs::create_symlink("/nix/store-built/x-nixos-system-web-1", root / "nix/var/nix/profiles/system-1-link");
  fs::create_symlink("system-1-link", root / "nix/var/nix/profiles/system");
  fs::create_directories(root / "run");
  fs::create_symlink("/nix/var/nix/profiles/system", root / "run/current-system");
  sprout::Manifest m;
  m.name = "web";
  m.generation = std::string(64, 'a');
  m.config_digest = std::string(64, 'c');
  m.self_digest = std::string(64, 'd');
  m.ssh_digest = std::string(64, 'e');
  m.rebuild.target = "/etc/nixos/hosts/self/configuration.nix";
  put(root / "etc/nixos/hosts/self/sprout-manifest.json", m.to_json_text());
  AgentState st;
  st.generation = m.generation;
  st.attempts = 1;
  st.built_system = st.applied_system = "/nix/store-built/x-nixos-system-web-1";
  st.applied = true;
  save_agent_state(root / "var/lib/sprout/state.json", st);
  put(root / "sys/class/virtio-ports/vport1p1/name", "sprout.status.0\n");
  put(root / "dev/vport1p1", "");

  spdlog::set_level(spdlog::level::warn);  // as on a console-less boot; the events still go to the log file
  AgentOptions o;
  o.root = root;
  o.config.disk_wait_seconds = 1;
  o.config.flush_timeout_seconds = 1;
  NoMounts mounter;
  std::vector<double> wall, cpu;
  for (int k = 0; k < n; ++k) {
    if (k % 200 == 0) fs::remove(root / "var/lib/sprout/agent.log");
    double c0 = cpu_ms();
    auto t0 = std::chrono::steady_clock::now();
    int rc = run_agent(o, mounter);
    wall.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(cpu_ms() - c0);
    if (rc != 0) {
      std::fprintf(stderr, "run %d: exit %d\n", k, rc);
      return 1;
    }
  }
  std::printf("agent fast path, fake tree, mounts excluded, %d runs in one process\n", n);
  stats("wall", wall);
  stats("cpu", cpu);
  std::string log;
  {
    std::ifstream in(root / "var/lib/sprout/agent.log");
    std::string line;
    while (std::getline(in, line)) log = line;
  }
  std::printf("last event: %s\n", log.c_str());
  fs::remove_all(root);
  return 0;
}
