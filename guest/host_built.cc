#include "host_built.h"

#include <sys/stat.h>

#include <fmt/format.h>

#include "root_path.h"
#include "store_path.h"

namespace sprout::agent {

namespace {

constexpr const char* kSystemProfile = "/nix/var/nix/profiles/system";

std::string tool(const HostBuiltRun& run, const char* name) {
  return run.nix_bin_dir.empty() ? name : run.nix_bin_dir + "/" + name;
}

const char* const kStepNames[] = {"importing the closure", "checking the imported system",
                                  "setting the system profile", "switch-to-configuration boot"};

}  // namespace

std::vector<std::vector<std::string>> host_built_commands(const HostBuiltRun& run) {
  std::vector<std::string> import{run.agent_exe.empty() ? "sprout-agent" : run.agent_exe, "--import-closure",
                                  run.closure_mount, "--system", run.system};
  if (!run.nix_bin_dir.empty()) import.insert(import.end(), {"--nix-bin-dir", run.nix_bin_dir});
  if (run.root != "/" && !run.root.empty()) import.insert(import.end(), {"--root", run.root});
  return {
      import,
      {tool(run, "nix-store"), "--check-validity", run.system},
      {tool(run, "nix-env"), "-p", kSystemProfile, "--set", run.system},
      {under_root(run.root, run.system + "/bin/switch-to-configuration"), "boot"},
  };
}

RebuildOutcome run_host_built(const HostBuiltRun& run) {
  RebuildOutcome out;
  if (auto p = store_path_problem(run.system); !p.empty()) {
    out.describe = fmt::format("the manifest's system {} {}", run.system, p);
    return out;
  }
  std::string narinfo = fmt::format("{}/{}.narinfo", run.closure_mount, store_path_hash(run.system));
  struct stat st;
  if (::stat(under_root(run.root, narinfo).c_str(), &st) != 0) {
    out.describe = fmt::format("the closure disk does not hold {} (no {}): it was made for another system; export "
                               "the VM again",
                               run.system, narinfo);
    return out;
  }
  auto commands = host_built_commands(run);
  auto t0 = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < commands.size(); ++i) {
    auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    RebuildRun step;
    step.argv = commands[i];
    step.timeout = run.timeout.count() > 0 ? std::max(run.timeout - spent, std::chrono::milliseconds(1))
                                           : std::chrono::milliseconds(0);
    step.cancel_fd = run.cancel_fd;
    step.log_file = run.log_file;
    step.append_log = i > 0;
    step.on_line = run.on_line;
    if (run.on_line) run.on_line(fmt::format("sprout-agent: {}: {}", kStepNames[i], format_command(step.argv)));
    RebuildOutcome r = run_rebuild(step);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!r.ok) {
      r.describe = fmt::format("{}: {}", kStepNames[i], r.describe);
      return r;
    }
    out = r;
  }
  out.describe = "switched";
  return out;
}

}  // namespace sprout::agent
