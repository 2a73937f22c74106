#include "agent.h"

#include <poll.h>
#include <sys/resource.h>

#include <chrono>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "agent_state.h"
#include "decision.h"
#include "disk_finder.h"
#include "host_built.h"
#include "manifest.h"
#include "rebuild.h"
#include "root_path.h"
#include "status_channel.h"

namespace sprout::agent {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

double round2(double v) { return static_cast<double>(static_cast<long long>(v * 100 + 0.5)) / 100; }

// CPU time of the whole process so far (user + system), ms.
double process_cpu_ms(double* user_out = nullptr, double* sys_out = nullptr) {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  double user = ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3;
  double sys = ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3;
  if (user_out) *user_out = user;
  if (sys_out) *sys_out = sys;
  return user + sys;
}

bool cancelled(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

class Run {
 public:
  Run(const AgentOptions& o, Mounter& m) : o_(o), cfg_(o.config), m_(m) {}

  /// Runs the boot; an unexpected error still reaches the host as `failed`, so it
  /// never waits for an answer that will not come.
  int go() {
    try {
      return go_unguarded();
    } catch (const std::exception& e) {
      if (!ch_) throw;
      spdlog::error("sprout-agent: {}", e.what());
      try {
        return fail(fmt::format("internal error: {}", e.what()), json::object());
      } catch (...) {
        return 1;
      }
    }
  }

 private:
  int go_unguarded() {
    start_ = Clock::now();
    start_cpu_ = process_cpu_ms();
    // --- report: open the channel, say we started --------------------------------
    auto t = Clock::now();
    std::string boot_id = read_small_file(under_root(o_.root, "/proc/sys/kernel/random/boot_id"), 64);
    if (boot_id.empty()) boot_id = "unknown";
    mark("bootId");
    std::string port = o_.status_port_path;
    if (port.empty()) {
      std::string guest_port = find_virtio_port(o_.root, cfg_.status_port);
      if (!guest_port.empty()) port = under_root(o_.root, guest_port);
    }
    mark("portFound");
    int fd = port.empty() ? -1 : StatusChannel::open_port(port);
    if (!port.empty() && fd < 0) spdlog::warn("cannot open status port {}: {}", port, std::strerror(errno));
    ch_ = std::make_unique<StatusChannel>(fd, under_root(o_.root, cfg_.effective_log_file()), boot_id);
    json sd{{"statusPort", port.empty() ? json(nullptr) : json(port)}, {"pid", ::getpid()}};
    if (o_.config_missing) sd["configMissing"] = o_.config_path;
    if (!ch_->log_error().empty()) sd["logFileError"] = ch_->log_error();
    mark("channelOpen");
    ch_->send(Phase::starting, "sprout-agent started", sd);
    report_ms_ += ms_since(t);
    mark("starting");

    // --- find ---------------------------------------------------------------------
    t = Clock::now();
    auto wait = std::chrono::milliseconds(static_cast<long long>(cfg_.disk_wait_seconds * 1000));
    // The ssh disk is looked for in the same scans (not waited for): one scan, not two.
    // Not the closure disk (host-built VMs): it is looked for only to specialize, so a
    // guest-built VM's boot never scans for a disk it does not have.
    std::vector<DiskRole> optional;
    if (cfg_.ssh_mount) optional.push_back(DiskRole::ssh);
    auto found = find_disks(o_.root, {DiskRole::config, DiskRole::self}, wait, std::chrono::milliseconds(20), optional);
    find_ms_ = ms_since(t);
    disk_wait_ = wait;
    mark("disksFound");
    for (DiskRole r : {DiskRole::config, DiskRole::self}) {
      if (!found.count(r)) {
        const auto& info = role_info(r);
        return fail(fmt::format("required disk '{}' not found within {} s (virtio serial {}, label {})", info.name,
                                cfg_.disk_wait_seconds, info.serial, info.label),
                    json{{"disk", info.name}, {"serial", info.serial}, {"label", info.label}});
      }
    }
    if (cancelled(o_.cancel_fd)) return interrupted();

    // --- mount --------------------------------------------------------------------
    t = Clock::now();
    json disks = json::object();
    for (auto& [r, f] : found) disks[std::string(role_info(r).name)] = disk_json(f);
    ch_->send(Phase::mounting, "mounting the configuration disks", json{{"disks", disks}});
    report_ms_ += ms_since(t);
    mark("mounting");
    t = Clock::now();
    double c = process_cpu_ms();
    if (int rc = mount_one(found.at(DiskRole::config), cfg_.config_mount, false); rc >= 0) return rc;
    mark("configMounted");
    if (int rc = mount_one(found.at(DiskRole::self), cfg_.self_mount, false); rc >= 0) return rc;
    mark("selfMounted");
    mount_ms_ = ms_since(t);
    mount_cpu_ms_ += process_cpu_ms() - c;

    // --- decide -------------------------------------------------------------------
    t = Clock::now();
    Manifest m;
    std::string manifest_path = cfg_.self_mount + "/" + kManifestFileName;
    try {
      m = load_manifest(under_root(o_.root, manifest_path));
    } catch (const std::exception& e) {
      return fail(fmt::format("cannot use the manifest: {}", e.what()), json{{"manifest", manifest_path}});
    }
    mark("manifestRead");
    ch_->set_vm(m.name);
    ch_->set_generation(m.generation);
    manifest_ = m;
    std::string state_file = under_root(o_.root, cfg_.state_dir + "/state.json");
    LoadedState loaded = load_agent_state(state_file);
    if (!loaded.problem.empty()) {
      state_problem_ = loaded.problem;
      spdlog::warn("{}", loaded.problem);
    }
    mark("stateRead");
    DecisionInput in;
    in.generation = m.generation;
    in.max_attempts = m.rebuild.max_attempts;
    in.respecialize_on_change = m.rebuild.respecialize_on_change;
    in.state = loaded.state;
    in.current_system = resolve_in_root(o_.root, "/run/current-system");
    Decision d = decide(in);
    decide_ms_ = ms_since(t);
    mark("decided");

    // The ssh disk: optional, mounted only when the manifest says there is one.
    if (!m.ssh_digest.empty() && cfg_.ssh_mount) {
      t = Clock::now();
      double c = process_cpu_ms();
      mount_ssh(found, wait);
      mount_ms_ += ms_since(t);
      mount_cpu_ms_ += process_cpu_ms() - c;
      mark("sshMounted");
    }

    switch (d.action) {
      case Action::already_specialized:
        return specialized(d.message, d, in.current_system);
      case Action::keep_old:
        // The machine still runs the generation it applied: report that one, and the
        // exported one apart, as pending (never as if it had been applied).
        pending_generation_ = m.generation;
        ch_->set_generation(d.next_state.generation);
        return specialized(d.message, d, in.current_system);
      case Action::record_applied:
        if (!save(state_file, d.next_state)) return 1;
        return specialized(d.message, d, in.current_system);
      case Action::failed_not_booted:
        return fail(d.message, json{{"builtSystem", d.next_state.built_system}, {"currentSystem", in.current_system}});
      case Action::give_up:
        return fail(d.message, json{{"attempts", d.next_state.attempts}, {"lastResult", d.next_state.last_result}});
      case Action::specialize:
        return specialize(d, state_file);
    }
    return fail("internal error: unknown decision", nullptr);
  }

  json disk_json(const FoundDisk& f) {
    return json{{"device", f.device}, {"foundBy", f.found_by}, {"readOnly", f.read_only}};
  }

  // -1: mounted; else the exit status to return.
  int mount_one(const FoundDisk& f, const std::string& where, bool noexec) {
    MountResult r = m_.mount(MountRequest{f.device, where, noexec});
    if (r.ok) {
      mount_points_.push_back(where);
      if (r.already) spdlog::info("{} is already mounted at {}", f.device, where);
      return -1;
    }
    return fail(fmt::format("cannot mount the {} disk: {}", role_info(f.role).name, r.error),
                json{{"disk", role_info(f.role).name}, {"device", f.device}, {"mountPoint", where}});
  }

  /// The ssh disk, if the first scan did not find it, is waited for (bounded).
  void mount_ssh(const std::map<DiskRole, FoundDisk>& first_scan, std::chrono::milliseconds wait) {
    auto found = first_scan.count(DiskRole::ssh) ? first_scan : find_disks(o_.root, {DiskRole::ssh}, wait);
    if (!found.count(DiskRole::ssh)) {
      ssh_note_ = "the manifest lists an ssh disk but it was not found; going on without it";
      return;
    }
    MountResult r = m_.mount(MountRequest{found.at(DiskRole::ssh).device, *cfg_.ssh_mount, true});
    if (r.ok) mount_points_.push_back(*cfg_.ssh_mount);
    else ssh_note_ = "cannot mount the ssh disk: " + r.error;
  }

  json common_detail() {
    json d = json::object();
    auto t = Clock::now();
    double c = process_cpu_ms();
    d["mounts"] = m_.options_of(mount_points_);
    mount_ms_ += ms_since(t);
    mount_cpu_ms_ += process_cpu_ms() - c;
    mark("mountOptionsRead");
    if (!state_problem_.empty()) d["stateProblem"] = state_problem_;
    if (!ssh_note_.empty()) d["ssh"] = ssh_note_;
    return d;
  }

  bool save(const std::string& file, const AgentState& s) {
    try {
      save_agent_state(file, s);
      return true;
    } catch (const std::exception& e) {
      fail(fmt::format("cannot write the state file {}: {}", file, e.what()), nullptr);
      return false;
    }
  }

  int specialized(const std::string& message, const Decision& d, const std::string& current) {
    auto t = Clock::now();
    json detail = common_detail();
    detail["action"] = action_name(d.action);
    detail["currentSystem"] = current;
    detail["specializedBy"] = manifest_.host_built() ? "host" : "guest";
    if (!pending_generation_.empty()) detail["pendingGeneration"] = pending_generation_;
    report_ms_ += ms_since(t);
    detail["timingsMs"] = json{{"find", round2(find_ms_)},
                               {"mount", round2(mount_ms_)},
                               {"decide", round2(decide_ms_)},
                               {"report", round2(report_ms_ + ms_since(t))},
                               {"total", round2(ms_since(start_))}};
    double user = 0, sys = 0;
    double now_cpu = process_cpu_ms(&user, &sys);
    json steps = json::object();
    for (const auto& [what, at] : marks_) steps[what] = round2(at);
    detail["stepsMs"] = std::move(steps);
    detail["cpuMs"] = json{{"user", round2(user)},
                           {"system", round2(sys)},
                           {"total", round2(now_cpu)},
                           {"run", round2(now_cpu - start_cpu_)},
                           {"runWithoutMounts", round2(now_cpu - start_cpu_ - mount_cpu_ms_)}};
    ch_->send(Phase::specialized, message, detail);
    finish();
    return 0;
  }

  int fail(const std::string& message, json detail) {
    if (!detail.is_object()) detail = json::object();
    if (!state_problem_.empty()) detail["stateProblem"] = state_problem_;
    ch_->send(Phase::failed, message, detail);
    finish();
    return 1;
  }

  int interrupted() { return fail("interrupted", json{{"signal", "SIGTERM"}}); }

  void finish() {
    auto timeout = std::chrono::milliseconds(static_cast<long long>(cfg_.flush_timeout_seconds * 1000));
    if (!ch_->flush(timeout))
      spdlog::warn("status: {} event(s) not taken by a host within {} s (they are in the log file {})", ch_->queued(),
                   cfg_.flush_timeout_seconds, cfg_.effective_log_file());
  }

  int specialize(const Decision& d, const std::string& state_file) {
    AgentState st = d.next_state;
    st.last_result = "attempt started";
    if (!save(state_file, st)) return 1;  // never rebuild without a durable record of the attempt
    if (manifest_.host_built()) {
      if (int rc = mount_closure(state_file, st); rc >= 0) return rc;
    }
    RebuildSettings rs = manifest_.rebuild;
    HostBuiltRun hb;
    hb.root = o_.root;
    hb.system = manifest_.system;
    hb.closure_mount = cfg_.closure_mount;
    hb.nix_bin_dir = cfg_.nix_bin_dir;
    hb.agent_exe = o_.self_exe;
    std::vector<std::string> argv;
    json detail = common_detail();
    detail["specializedBy"] = manifest_.host_built() ? "host" : "guest";
    if (!pending_generation_.empty()) detail["pendingGeneration"] = pending_generation_;
    if (manifest_.host_built()) {
      json commands = host_built_commands(hb);
      detail["commands"] = commands;
      detail["system"] = manifest_.system;
    } else {
      argv = rebuild_argv(cfg_.rebuild_command, rs);
      detail["command"] = argv;
    }
    detail["attempt"] = d.attempt;
    detail["maxAttempts"] = rs.max_attempts;
    detail["timeoutSeconds"] = rs.timeout_seconds;
    ch_->send(Phase::rebuilding,
              manifest_.host_built()
                  ? fmt::format("{}: switching to {}, built by the host, from the closure disk", d.message,
                                manifest_.system)
                  : d.message + ": " + format_command(argv),
              detail);
    if (cancelled(o_.cancel_fd)) return record_and_fail(state_file, st, "interrupted", "interrupted", nullptr);

    auto on_line = [&](std::string_view line) { ch_->send(Phase::log, std::string(line)); };
    std::string log_file = under_root(o_.root, cfg_.state_dir + "/rebuild.log");
    RebuildOutcome out;
    if (manifest_.host_built()) {
      hb.timeout = std::chrono::seconds(rs.timeout_seconds);
      hb.cancel_fd = o_.cancel_fd;
      hb.log_file = log_file;
      hb.on_line = on_line;
      out = run_host_built(hb);
    } else {
      RebuildRun run;
      run.argv = argv;
      run.timeout = std::chrono::seconds(rs.timeout_seconds);
      run.cancel_fd = o_.cancel_fd;
      run.log_file = log_file;
      run.on_line = on_line;
      out = run_rebuild(run);
    }
    const char* what = manifest_.host_built() ? "switch to the host-built system" : "rebuild";
    if (out.interrupted)
      return record_and_fail(state_file, st, "interrupted", "interrupted",
                             json{{"lastLines", out.last_lines}, {"signal", "SIGTERM"}});
    if (!out.ok) {
      std::string msg = manifest_.host_built()
                            ? fmt::format("the switch to the host-built system failed, {} (attempt {} of {})",
                                          out.describe, d.attempt, rs.max_attempts)
                            : fmt::format("rebuild {} (attempt {} of {})", out.describe, d.attempt, rs.max_attempts);
      if (manifest_.host_built() && json(out.last_lines).dump().find("in-the-base-system-not-on-this-disk") !=
                                        std::string::npos)
        msg += "; a path of the base system is missing in this guest: the VM does not boot the base its "
               "closure disk was made against (the spec's baseSystem)";
      return record_and_fail(state_file, st, out.describe, msg,
                             json{{"exitStatus", out.describe},
                                  {"timedOut", out.timed_out},
                                  {"lastLines", out.last_lines},
                                  {"seconds", round2(out.seconds)},
                                  {"rebuildLog", cfg_.state_dir + "/rebuild.log"}});
    }
    std::string built = resolve_in_root(o_.root, "/nix/var/nix/profiles/system");
    if (built.empty())
      return record_and_fail(state_file, st, "no system profile after the rebuild",
                             fmt::format("the {} succeeded but /nix/var/nix/profiles/system does not exist", what),
                             nullptr);
    if (manifest_.host_built() && built != manifest_.system)
      return record_and_fail(state_file, st, "the system profile is another system",
                             fmt::format("after the switch /nix/var/nix/profiles/system is {}, not {}", built,
                                         manifest_.system),
                             nullptr);
    st.built_system = built;
    st.last_result = "rebuilt";
    if (!save(state_file, st)) return 1;
    ch_->send(Phase::rebuilt,
              manifest_.host_built() ? fmt::format("switched to {} (built by the host) in {:.1f} s", built, out.seconds)
                                     : fmt::format("rebuilt {} in {:.1f} s", built, out.seconds),
              json{{"system", built},
                   {"seconds", round2(out.seconds)},
                   {"attempt", d.attempt},
                   {"specializedBy", manifest_.host_built() ? "host" : "guest"}});
    ch_->send(Phase::rebooting, "rebooting into the new system: " + format_command(cfg_.reboot_command),
              json{{"command", cfg_.reboot_command}});
    finish();
    if (cancelled(o_.cancel_fd)) return fail("interrupted before the reboot", json{{"signal", "SIGTERM"}});
    ProcessOptions po;
    po.argv = cfg_.reboot_command;
    po.timeout = std::chrono::seconds(120);
    ProcessResult r = run_process(po);
    if (!r.ok())
      return fail(fmt::format("the reboot command `{}` {}", format_command(cfg_.reboot_command),
                              r.started ? r.describe() : "could not start: " + r.error),
                  json{{"lastLines", r.last_lines(20)}});
    return 0;
  }

  /// Host-built: the closure disk, looked for now (bounded wait), mounted read-only,
  /// noexec. -1 when mounted; else the exit status.
  int mount_closure(const std::string& state_file, const AgentState& st) {
    const auto& info = role_info(DiskRole::closure);
    auto found = find_disks(o_.root, {DiskRole::closure}, disk_wait_);
    if (!found.count(DiskRole::closure))
      return record_and_fail(
          state_file, st, "closure disk not found",
          fmt::format("host-built system {}: the closure disk (virtio serial {}, label {}) was not found within {} s; "
                      "the host attaches STATE_DIR/closure.img, which `sprout export` makes for a spec with "
                      "\"specialize\": \"host\"",
                      manifest_.system, info.serial, info.label, cfg_.disk_wait_seconds),
          json{{"disk", info.name}, {"serial", info.serial}, {"label", info.label}, {"system", manifest_.system}});
    const FoundDisk& f = found.at(DiskRole::closure);
    MountResult r = m_.mount(MountRequest{f.device, cfg_.closure_mount, true});
    if (!r.ok)
      return record_and_fail(state_file, st, "cannot mount the closure disk",
                             fmt::format("cannot mount the closure disk: {}", r.error),
                             json{{"disk", info.name}, {"device", f.device}, {"mountPoint", cfg_.closure_mount}});
    mount_points_.push_back(cfg_.closure_mount);
    return -1;
  }

  int record_and_fail(const std::string& state_file, AgentState st, const std::string& result, const std::string& msg,
                      json detail) {
    st.last_result = result;
    try {
      save_agent_state(state_file, st);
    } catch (const std::exception& e) {
      spdlog::error("cannot write the state file {}: {}", state_file, e.what());
    }
    return fail(msg, std::move(detail));
  }

  const AgentOptions& o_;
  const AgentConfig& cfg_;
  Mounter& m_;
  std::unique_ptr<StatusChannel> ch_;
  Manifest manifest_;
  std::chrono::milliseconds disk_wait_{0};
  std::vector<std::string> mount_points_;
  std::string state_problem_;
  std::string ssh_note_;
  std::string pending_generation_;  ///< keep_old: the exported generation not applied
  Clock::time_point start_;
  /// Time from the start of the run at each step of the fast path (stepsMs).
  void mark(const char* what) { marks_.emplace_back(what, ms_since(start_)); }
  std::vector<std::pair<const char*, double>> marks_;
  double find_ms_ = 0, mount_ms_ = 0, decide_ms_ = 0, report_ms_ = 0;
  double start_cpu_ = 0, mount_cpu_ms_ = 0;  ///< process CPU ms at the start; spent mounting
};

}  // namespace

int run_agent(const AgentOptions& options, Mounter& mounter) {
  try {
    Run run(options, mounter);
    return run.go();
  } catch (const std::exception& e) {
    spdlog::error("sprout-agent: {}", e.what());
    return 1;
  }
}

}  // namespace sprout::agent
