// sprout run / sprout watch: run and supervise a VM under QEMU; record the status
// channel of a VM someone else runs.
#include <fcntl.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <thread>
#include <cstring>
#include <filesystem>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "backend/backend.h"
#include "cli/cli_util.h"
#include "cli/commands.h"
#include "identity/vm_identity.h"
#include "error.h"
#include "runtime/kvm_probe.h"
#include "disk/prepare.h"
#include "image/export.h"
#include "base/process_identity.h"
#include "runtime/dynamic_uid.h"
#include "runtime/vm_uid_registry.h"
#include "runtime/orphaned_qemu.h"
#include "runtime/qemu_command.h"
#include "runtime/qemu_confinement.h"
#include "runtime/run_lock.h"
#include "spec/spec.h"
#include "status/run_state.h"
#include "spec/spec_dir.h"
#include "cli/vm_locator.h"
#include "status/status_recorder.h"
#include "status/status_store.h"
#include "subprocess.h"
#include "runtime/supervisor.h"
#include "base/terminal_text.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void rotate_console_log(const Spec& spec) {
  std::error_code ec;
  auto size = fs::file_size(spec.console_log(), ec);
  if (!ec && size > (8u << 20)) fs::rename(spec.console_log(), spec.state().console_rotated(), ec);
}

// What to change when qemu dies before the guest runs, given how the accelerator was
// chosen: qemu's own words name the fault, this names the spec key.
std::string accel_hint(const Spec& spec, const AccelChoice& accel) {
  if (!accel.kvm) return "";
  if (spec.accel == Accel::kvm)
    return fmt::format("it ran with KVM because {} says \"accel\": \"kvm\"; if KVM cannot run guests on this host, "
                       "set \"accel\": \"auto\" or \"tcg\" there",
                       spec.file.string());
  return fmt::format("it ran with KVM (\"accel\": \"auto\": {}); set \"accel\": \"tcg\" in {} to use software "
                     "emulation",
                     accel.probe ? accel.probe->why : "KVM looked usable", spec.file.string());
}

}  // namespace

namespace {

/// A new run starts a new record at once: `sprout wait` must not mistake the last
/// run's record for this one while prepare (export, overlay) is still working.
void start_record(const Spec& spec) {
  StatusStore store(spec.state_dir);
  StatusRecorder rec(spec.name, store);
  rec.reset();
  HostPart host;
  host.state = HostState::preparing;
  host.supervisor = ProcessIdentity::self();
  host.started_ms = unix_time_ms();
  rec.set_host(host);
}

/// The host's side of a re-specialization: the guest will see a new generation.
void record_configuration_change(const Spec& spec, const std::string& before, const std::string& now) {
  std::string what = fmt::format("the exported configuration changed (generation {} -> {}): the guest "
                                 "re-specializes at this boot",
                                 short_generation(before), short_generation(now));
  spdlog::info("{}: {}", spec.name, what);
  StatusStore(spec.state_dir)
      .append_event({{"source", "host"}, {"event", "configuration-changed"}, {"vm", spec.name}, {"message", what},
                     {"hostTimeMs", unix_time_ms()}});
}

/// The spec's accel decided (kvm_probe.h), with the one warning when "auto" falls back.
AccelChoice choose_accel_for(const Spec& spec, const std::string& qemu) {
  AccelChoice accel = choose_accel(spec.accel, qemu);
  if (!accel.fallback_why.empty())
    spdlog::warn("{}: KVM does not run guests here: {}. Using software emulation (TCG), which is much slower. "
                 "Set \"accel\": \"tcg\" in {} to choose it and silence this warning (`sprout check-host` "
                 "shows what this host can do)",
                 spec.name, for_terminal(accel.fallback_why), spec.file.string());
  return accel;
}

/// Who qemu will run as, asked before anything is written: a named user that does not
/// exist is an input error at once. A binary that cannot be run at all is left to fail
/// where it always did, when it is started.
struct Confinement {
  QemuFeatures features;
  QemuUser user;
  bool known = false;  ///< false: `qemu -help` could not be run; qemu will not start either
};

Confinement plan_confinement(const Spec& spec, const std::string& qemu) {
  Confinement c;
  c.features = qemu_features(qemu);
  if (!c.features.started) return c;
  c.user = resolve_qemu_user(spec, c.features, ::geteuid());
  c.known = true;
  return c;
}

/// The arguments for this run; says who qemu runs as, and warns for root or no sandbox.
std::vector<std::string> confine(const Spec& spec, const Confinement& c) {
  if (!c.known) return {};
  auto args = confinement_args(c.user, c.features, spec.network.mode == NetworkMode::bridge);
  const bool sandboxed = std::find(args.begin(), args.end(), "-sandbox") != args.end();
  if (c.user.kind == QemuUser::Kind::root)
    spdlog::warn("{}: qemu runs as root (\"qemuUser\": \"root\" in {}): a guest that escapes it owns this host",
                 spec.name, spec.file.string());
  if (!c.features.sandbox)
    spdlog::warn("{}: this qemu has no seccomp sandbox (-sandbox: built without libseccomp); it runs without one",
                 spec.name);
  else if (!sandboxed)
    spdlog::warn("{}: no seccomp sandbox for qemu: sprout is not root, and the bridge helper qemu starts must "
                 "gain privileges, which the sandbox would forbid",
                 spec.name);
  spdlog::info("{}: qemu runs as {}{}", spec.name, c.user.describe(), sandboxed ? ", in its seccomp sandbox" : "");
  return args;
}

void run_options(cxxopts::Options& o) {
  o.add_options()(
      "external-recorder", "do not record the status channel here (run `sprout watch` for that)")(
      "qemu", "the qemu binary", cxxopts::value<std::string>()->default_value("qemu-system-x86_64"), "PROGRAM")(
      "print-command", "print the qemu command line and exit; exports, creates and records nothing");
}

}  // namespace

int cmd_run(const Invocation& inv) {
  const auto& a = inv.args;
  Spec spec = *inv.vm;
  if (spec.backend != Backend::qemu)
    throw InputError(fmt::format("{}: backend is \"{}\"; `sprout run` runs QEMU VMs (use `sprout define` for libvirt)",
                                 spec.file.string(), name_of(spec.backend)));
  QemuEnvironment env;
  env.qemu_binary = a["qemu"].as<std::string>();
  env.status_wait_for_reader = !a.count("external-recorder");
  check_qemu_can_run(spec);  // input errors (network mode, qemu's user) before anything is written
  Confinement confinement = plan_confinement(spec, env.qemu_binary);
  if (a.count("print-command")) {
    // A dry run: what `sprout run` would start, with the disks where prepare puts
    // them and the uid a dynamic user tries first; nothing is exported, created,
    // claimed or recorded.
    for (DiskRole role : exported_roles(spec)) env.disks.emplace_back(role, spec.exported_image(role_info(role).name));
    if (auto id = read_identity(spec.state())) env.machine_id = id->machine_id;
    if (confinement.user.kind == QemuUser::Kind::dynamic)
      confinement.user.uid = confinement.user.gid = DynamicUid::first_choice(spec.name);
    env.confinement = confine(spec, confinement);
    env.kvm = choose_accel_for(spec, env.qemu_binary).kvm;
    fmt::print("{}\n", format_command(build_qemu_command(spec, env)));  // one line, quoted for a POSIX shell
    return 0;
  }

  const bool record = !a.count("external-recorder");
  int lock = lock_run(spec, record ? Recorder::run : Recorder::watcher);
  // Before anything is prepared: a qemu a killed run left behind still holds the
  // overlay, and a dynamic uid's claim ends the orphans of other killed runs.
  end_orphaned_qemu(spec);
  std::optional<DynamicUid> uid;  // claimed for as long as qemu runs
  if (confinement.known && confinement.user.kind == QemuUser::Kind::dynamic) {
    uid.emplace(DynamicUid::claim(default_uid_registry(), spec.name, default_vm_uid_registry()));
    confinement.user.uid = confinement.user.gid = uid->uid();
  }
  if (record) start_record(spec);
  // SIGTERM/SIGINT during prepare wait until the export and qemu-img are done (they are
  // never left running behind us, half way through an overlay), then end the run
  // without starting the VM.
  sigset_t stop_signals, original_mask;
  sigemptyset(&stop_signals);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop_signals, sig);
  ::sigprocmask(SIG_BLOCK, &stop_signals, &original_mask);
  const std::string exported_before = exported_generation(spec);
  auto prepared = prepare_vm(spec);
  if (record && !exported_before.empty() && exported_before != prepared.exported.manifest.generation)
    record_configuration_change(spec, exported_before, prepared.exported.manifest.generation);
  sigset_t pending;
  sigpending(&pending);
  if (sigismember(&pending, SIGTERM) || sigismember(&pending, SIGINT) || sigismember(&pending, SIGHUP)) {
    spdlog::info("{}: asked to stop while preparing; not starting the VM", spec.name);
    if (record) {
      StatusStore store(spec.state_dir);
      StatusRecorder rec(spec.name, store);
      if (RecordFile old = read_record(spec.status_file()); old.state == RecordFile::ok) rec.resume_from(old.record);
      HostPart stopped;
      stopped.state = HostState::stopped;
      stopped.how = "stopped before the VM started";
      stopped.stopped_ms = unix_time_ms();
      rec.set_host(stopped);
    }
    unlock_run(lock);
    return 0;
  }
  ::sigprocmask(SIG_SETMASK, &original_mask, nullptr);
  spdlog::info("{}: overlay {} ({})", spec.name, prepared.overlay.overlay.string(), prepared.overlay.action);
  for (const auto& img : prepared.exported.images) env.disks.emplace_back(img.role, img.link);
  env.machine_id = prepared.exported.machine_id;
  const AccelChoice accel = choose_accel_for(spec, env.qemu_binary);
  env.kvm = accel.kvm;
  env.confinement = confine(spec, confinement);
  auto argv = build_qemu_command(spec, env);
  rotate_console_log(spec);
  SuperviseOptions so;
  so.argv = argv;
  so.record = record;
  so.accel_hint = accel_hint(spec, accel);
  // What qemu creates in the state directory (the console log, its sockets) is the
  // VM's private data too.
  ::umask(077);
  RunOutcome outcome = supervise(spec, so);
  unlock_run(lock);
  return static_cast<int>(outcome);
}

const Command kRunCommand = {"run", "prepare, then run and supervise the VM under QEMU",
    "Prepare a VM, then run it under QEMU and supervise it until it powers off.\n"
    "SIGTERM/SIGINT power the guest down (QMP system_powerdown), quit qemu after the spec's\n"
    "shutdownTimeoutSeconds, then kill it. Exit status: 0 guest powered off, 1 qemu failed,\n"
    "2 bad input, 3 qemu was quit (the guest ignored power-down, or `sprout stop --force`), 4 qemu\n"
    "was killed (SIGKILL after\n"
    "quit timed out, or a signal someone sent), 5 qemu crashed (SIGABRT, SIGSEGV, ...).",
    Needs::one_vm, run_options, cmd_run};

namespace {

/// How long `sprout watch` gives a qemu VM's `sprout run --external-recorder` started
/// beside it (`sprout run web --external-recorder & sprout watch web`) to take the run lock.
constexpr auto kRunStartGrace = std::chrono::seconds(5);

/// A qemu-backend VM is recorded by its `sprout run`: a watcher is wanted only beside a
/// run that leaves recording to one (--external-recorder). Beside a run that records, a
/// watcher would write the same record twice; with no run at all it would overwrite the
/// last run's record with its own. (libvirt VMs are what `watch` is for.)
void check_watch_is_wanted(const Spec& spec) {
  const RecordFile record = read_record(spec.status_file());
  const bool live = view_run(spec, record).state == RunView::live;
  // Either backend: a second watcher beside a live one would write the same record
  // twice, whether or not a VM is connected to the first now (a watcher outlives the
  // runs it records; one that died is no watcher).
  const HostPart& host = record.record.host;
  if (host.watch && host.state != HostState::stopped && host.supervisor && host.supervisor->alive())
    throw InputError(fmt::format("VM {}: another `sprout watch`{} records it already; a second recorder would "
                                 "overwrite its record (`sprout logs {} --follow` follows it)",
                                 spec.name,
                                 record.record.host.supervisor
                                     ? fmt::format(" (pid {})", record.record.host.supervisor->pid)
                                     : "",
                                 vm_arguments(spec)));
  if (spec.backend != Backend::qemu) return;
  auto recorded_already = [&] {
    auto holder = run_lock_holder(spec);
    return InputError(fmt::format("VM {}: its sprout run{} records it already; a second recorder would overwrite "
                                  "its record (`sprout logs {} --follow` follows it)",
                                  spec.name, holder ? fmt::format(" (pid {})", *holder) : "", vm_arguments(spec)));
  };
  if (live) throw recorded_already();
  const auto deadline = std::chrono::steady_clock::now() + kRunStartGrace;
  for (;;) {
    if (auto recorder = run_lock_recorder(spec)) {
      if (*recorder == Recorder::watcher) return;
      throw recorded_already();
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  throw InputError(fmt::format(
      "VM {}: {} says \"backend\": \"qemu\": its `sprout run` records it, so `sprout watch` does not (it records "
      "libvirt VMs, and a qemu VM only while a `sprout run {} --external-recorder` runs it; none does). Start it "
      "with `sprout start {}` or `sprout run {}`; `sprout logs {} --follow` follows it",
      spec.name, spec.file.string(), vm_arguments(spec), vm_arguments(spec), vm_arguments(spec), vm_arguments(spec)));
}

}  // namespace

int cmd_watch(const Invocation& inv) {
  Spec spec = *inv.vm;
  check_watch_is_wanted(spec);
  spec.state().make_private(spec.backend == Backend::libvirt);
  // One loop with `sprout run`'s (supervisor.h): without a qemu command line it records
  // only, with this process as the record's supervisor, until a signal. The backend
  // says where the channel is read (libvirt: through its API, for a domain on any host).
  SuperviseOptions so;
  so.channel = backend_for(spec).status_channel(spec);
  return static_cast<int>(supervise(spec, so));
}

const Command kWatchCommand = {"watch", "record a VM's status channel (for VMs libvirt runs)",
    "Record a VM's status channel into status.json and events.jsonl, reconnecting whenever\n"
    "it goes away, until SIGTERM/SIGINT. For VMs that libvirt runs (\"backend\": \"libvirt\"),\n"
    "on this host or another: the domain's channel is read through libvirt's API. A\n"
    "qemu-backend VM is refused (exit 2) unless a `sprout run --external-recorder` runs it\n"
    "(given 5 s to take the VM's run lock; its STATE/status.sock is read): its `sprout run`\n"
    "records it.",
    Needs::one_vm, nullptr, cmd_watch};

}  // namespace sprout
