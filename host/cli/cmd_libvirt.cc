// sprout define / undefine / stop: the libvirt backend's commands (docs/libvirt.md).
#include <sys/stat.h>


#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "error.h"
#include "runtime/kvm_probe.h"
#include "base/terminal_text.h"
#include "libvirt/libvirt_connection.h"
#include "libvirt/libvirt_domain_xml.h"
#include "disk/overlay_origin.h"
#include "libvirt/libvirt_disk_access.h"
#include "libvirt/vm_volumes.h"
#include "base/file_lock.h"
#include "cli/pool_disks.h"
#include "atomic_file.h"
#include <nlohmann/json.hpp>
#include "runtime/vm_uid_registry.h"
#include "disk/overlay.h"
#include "disk/prepare.h"
#include "spec/spec.h"
#include "cli/vm_locator.h"
#include "spec/spec_dir.h"
#include "vm_name.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

/// The overlay is the VM's uid's, and its header names the backing file it likes: only
/// the spec's base, or a backing file the root-owned origin record lists for this very
/// overlay, is opened to the VM's qemu (read, through its ACL). Anything else is refused.
void require_known_backing(const Spec& spec, const std::filesystem::path& backing) {
  std::error_code ec;
  const auto b = std::filesystem::weakly_canonical(backing, ec);
  if (b == std::filesystem::weakly_canonical(spec.base_image, ec)) return;
  std::string why;
  if (auto origin = read_overlay_origin(spec.state(), why)) {
    struct stat st;
    if (::stat(spec.overlay_path().c_str(), &st) == 0 && st.st_ino == origin->overlay_inode)
      for (const auto& f : origin->backing_files)
        if (f == b) return;
  }
  throw std::runtime_error(fmt::format(
      "{}: its overlay {} names {} as its backing file, which is neither the spec's base {} nor one its origin record "
      "({}) lists; it is not opened to the VM's qemu. Look at it (qemu-img info --backing-chain); if the VM's qemu "
      "rewrote it, make the VM again (sprout destroy --delete-disks, then define)",
      spec.name, spec.overlay_path().string(), backing.string(), spec.base_image.string(),
      spec.state().overlay_origin().string()));
}

// Everything that can be checked without touching anything: a spec that fails here
// leaves libvirt and the disk as they were.
void check_before_define(const Spec& spec) {
  if (spec.backend != Backend::libvirt)
    throw InputError(fmt::format("spec {}: backend is \"{}\"; `sprout define` is for backend \"libvirt\" (a VM "
                                 "run by both sprout run and libvirt would use its overlay twice)",
                                 spec.file.string(), name_of(spec.backend)));
  require_base_image(spec);
  std::error_code ec;
  if (spec.kernel) {
    if (!fs::is_regular_file(spec.kernel->kernel, ec))
      throw InputError(fmt::format("{}: kernel not found (spec {}: kernel.path)", spec.kernel->kernel.string(),
                                   spec.file.string()));
    if (spec.kernel->initrd && !fs::is_regular_file(*spec.kernel->initrd, ec))
      throw InputError(fmt::format("{}: initrd not found (spec {}: kernel.initrd)", spec.kernel->initrd->string(),
                                   spec.file.string()));
  }
  domain_xml(spec, {});  // what the XML cannot express (InputError)
}

std::chrono::seconds timeout_of(const Spec& spec) { return std::chrono::seconds(spec.shutdown_timeout_seconds); }

// Domain type 'kvm' or 'qemu' for the spec's "accel". "auto" takes 'kvm' only where
// libvirt offers it and, on this host (qemu:///...), a probe guest ran under KVM:
// libvirt offers 'kvm' wherever /dev/kvm opens, even where no guest can run.
bool libvirt_domain_kvm(const Spec& spec, LibvirtConnection& conn) {
  switch (spec.accel) {
    case Accel::kvm: return true;
    case Accel::tcg: return false;
    case Accel::automatic: break;
  }
  if (!conn.has_kvm()) {
    spdlog::warn("{}: libvirt ({}) offers no KVM domains; using software emulation (domain type 'qemu'), which is "
                 "much slower",
                 spec.name, conn.uri());
    return false;
  }
  if (conn.uri().rfind("qemu:///", 0) != 0) return true;  // another host: libvirt's word is all there is
  const AccelChoice choice = choose_accel(Accel::automatic, "qemu-system-x86_64");
  if (!choice.kvm)
    spdlog::warn("{}: KVM does not run guests here: {}. Using software emulation (domain type 'qemu'), which is "
                 "much slower. Set \"accel\": \"tcg\" in {} to choose it and silence this warning",
                 spec.name, for_terminal(choice.fallback_why), spec.file.string());
  return choice.kvm;
}

struct PutInPool {
  PoolVolumes volumes;
  std::string machine_id;
  std::string summary;
};

// Pool mode: export the VM's disks here, then put them into the pool on the daemon's
// host (libvirt/vm_volumes.h), record which volumes the domain uses, and print what
// travelled. No local overlay: the VM's overlay is a volume. `lock` stays held.
PutInPool put_disks_in_pool(const Spec& spec, LibvirtConnection& conn, std::unique_ptr<FileLock>& lock) {
  spec.state().make_private(true);
  ExportResult exported = export_disks(export_request_for(spec));
  record_export(spec, exported);
  VmDiskFiles files;
  files.base = spec.base_image;
  files.base_format = spec.base_format;
  files.overlay_capacity = spec.disk_size_bytes ? *spec.disk_size_bytes : inspect_image(spec.base_image).virtual_size;
  files.digest_memo_dir = spec.cache_dir / ".file-digests";
  for (DiskRole role : exported_roles(spec)) {
    auto it = std::find_if(exported.images.begin(), exported.images.end(),
                           [&](const ExportedImage& i) { return i.role == role; });
    if (it != exported.images.end()) files.disks.emplace_back(role, it->image);
  }
  lock = lock_pool(spec.cache_dir / ".libvirt-pool-locks", conn.uri(), spec.libvirt_pool);
  VmVolumes v = put_vm_disks_in_pool(conn, spec, files);

  PutInPool out;
  out.machine_id = exported.machine_id;
  out.volumes.pool = v.pool;
  out.volumes.overlay = v.overlay;
  out.volumes.backing_path = v.backing_path;
  out.volumes.backing_format = v.backing_format;
  for (const auto& d : v.disks) out.volumes.disks.emplace_back(d.role, d.volume);

  nlohmann::json uploads = nlohmann::json::array();
  std::uint64_t file_bytes = 0;
  for (const auto& u : v.uploads) {
    uploads.push_back({{"volume", u.volume}, {"fileBytes", u.file_bytes}, {"streamDataBytes", u.data_bytes}});
    file_bytes += u.file_bytes;
  }
  nlohmann::json record = {{"uri", conn.uri()},
                           {"pool", v.pool},
                           {"overlay", v.overlay},
                           {"overlayAction", v.overlay_action},
                           {"volumes", v.used()},
                           {"lastDefine", {{"uploads", uploads},
                                           {"streamDataBytes", v.carried_bytes()},
                                           {"removedPartialUploads", v.removed_partials}}}};
  write_file_atomic(volumes_record_path(spec), record.dump(2) + "\n", 0644);
  for (const auto& u : v.uploads)
    fmt::print("{}: uploaded volume {} to storage pool {}: {} bytes, {} carried by the stream\n", spec.name, u.volume,
               v.pool, u.file_bytes, u.data_bytes);
  for (const auto& p : v.removed_partials)
    fmt::print("{}: removed partial upload {} from storage pool {}\n", spec.name, p, v.pool);
  out.summary = fmt::format("storage pool {}: overlay volume {} {}; {} volume(s) uploaded, {} bytes carried by the "
                            "streams ({} bytes of files)",
                            v.pool, v.overlay, v.overlay_action, v.uploads.size(), v.carried_bytes(), file_bytes);
  return out;
}

}  // namespace

namespace {

void define_options(cxxopts::Options& o) {
  o.add_options()(
      "start", "start the domain when it is not running")(
      "restart", "restart a running domain whose definition changed (graceful stop first)");
}

}  // namespace

int cmd_define(const Invocation& inv) {
  const auto& a = inv.args;
  Spec spec = *inv.vm;
  check_before_define(spec);
  const bool restart = a.count("restart") > 0 || spec.restart_on_change;

  LibvirtConnection conn(spec.libvirt_uri);
  auto existing = conn.lookup(spec.name);
  if (existing) require_defined_by_sprout(*existing, conn.uri(), "replacing");

  DomainHostFacts facts;
  std::string overlay_text;  // for the summary line
  std::unique_ptr<FileLock> pool_lock;  // pool mode: held until the domain names its volumes
  if (spec.libvirt_pool_mode()) {
    auto put = put_disks_in_pool(spec, conn, pool_lock);
    facts.machine_id = put.machine_id;
    overlay_text = put.summary;
    facts.volumes = std::move(put.volumes);
  } else {
  auto prepared = prepare_vm(spec);
  const auto& overlay = prepared.overlay;
  spdlog::debug("{}: {} disks exported, overlay {}", spec.name, prepared.exported.images.size(), overlay.action);
  overlay_text = fmt::format("overlay {}: {}", overlay.overlay.string(), overlay.action);

  facts.backing = overlay.backing;
  facts.backing_format = overlay.backing == spec.base_image ? std::optional<std::string>(spec.base_format)
                                                           : inspect_image(spec.overlay_path()).backing_format;
  facts.machine_id = prepared.exported.machine_id;
  }
  facts.kvm = libvirt_domain_kvm(spec, conn);
  if (vm_uid_applies(spec) && !spec.libvirt_pool_mode()) {
    // Its qemu's own uid, for as long as the VM exists (`sprout destroy` frees it).
    facts.qemu_uid = host_vm_uid_registry().assign(spec.name, spec.state_dir);
    require_known_backing(spec, *facts.backing);
    open_disks_to(spec, *facts.backing, *facts.qemu_uid, conn.dac_qemu_uid());
    // A uid of its own has no supplementary groups: where /dev/kvm is open to its
    // group alone (Debian's 0660 kvm), a KVM domain's qemu takes that group as its gid.
    facts.qemu_gid = kvm_gid_for(facts.kvm);
    if (facts.qemu_gid)
      spdlog::info("{}: qemu runs as uid {} with /dev/kvm's group {} (/dev/kvm is not open to others)", spec.name,
                   *facts.qemu_uid, *facts.qemu_gid);
  }
  const std::string xml = domain_xml(spec, facts);
  const std::string want = embedded_digest(xml);

  std::string what;
  bool changed = true;
  if (existing) {
    auto meta = existing->sprout_metadata();
    changed = !meta || embedded_digest(*meta) != want || !existing->is_persistent();
    what = changed ? "updated" : "unchanged";
  } else {
    what = "defined";
  }
  std::optional<LibvirtDomain> dom;
  if (changed)
    dom.emplace(conn.define(xml, spec.name));
  else
    dom.emplace(std::move(*existing));
  dom->set_autostart(spec.autostart);

  std::string run;
  const bool active = dom->is_active();
  if (active && changed && existing) {
    if (restart) {
      std::string how = dom->stop(timeout_of(spec));
      dom->create();
      run = fmt::format("restarted ({} first)", how);
    } else {
      run = "running; the new definition takes effect at its next start (--restart to restart now)";
    }
  } else if (active) {
    run = "running";
  } else if (a.count("start")) {
    dom->create();
    run = "started";
  } else {
    run = "not running";
  }
  fmt::print("domain {} {} at {} ({}); {}\n", spec.name, what, conn.uri(), overlay_text, run);
  return 0;
}

const Command kDefineCommand = {"define", "prepare, then define (and optionally start) the libvirt domain",
    "Prepare a VM (export its disks, create its overlay) and define it as a libvirt domain, or\n"
    "update the definition. An unchanged definition is left alone; a changed one takes effect\n"
    "at the next start unless --restart (or the spec's restartOnChange) is given.",
    Needs::one_vm, define_options, cmd_define};

namespace {

void undefine_options(cxxopts::Options& o) {
  declare_needs(o, Needs::one_vm);
  o.add_options()("uri", "libvirt URI", cxxopts::value<std::string>(), "URI")(
      "force", "also undefine a domain of that name that sprout did not define");
}

}  // namespace

int cmd_undefine(const Invocation& inv) {
  const auto& a = inv.args;
  // The domain is named by NAME; its spec, when there is one, says where it lives. A
  // VM whose spec was already removed can still be undefined by NAME (with --uri).
  std::optional<Spec> spec;
  std::string name;
  if (a.count("spec")) {
    spec = locate_vm(a);
    name = spec->name;
  } else {
    if (!a.count("vm")) throw InputError("missing the VM NAME (sprout undefine NAME)");
    name = a["vm"].as<std::string>();
    if (auto p = vm_name_problem(name); !p.empty()) throw InputError(fmt::format("VM name \"{}\": {}", name, p));
    std::error_code ec;
    if (fs::exists(spec_dir_from(a) / (name + ".json"), ec)) spec = locate_vm(a);
  }
  if (spec && spec->backend != Backend::libvirt && !a.count("uri"))
    throw InputError(fmt::format("spec {}: backend is \"{}\"; `sprout undefine` removes libvirt domains (stop a "
                                 "qemu VM with `sprout stop {}`; --uri URI to undefine a domain of that name anyway)",
                                 spec->file.string(), name_of(spec->backend), vm_arguments(*spec)));
  const std::string uri = a.count("uri") ? a["uri"].as<std::string>() : spec ? spec->libvirt_uri : "qemu:///system";
  const auto timeout = spec ? timeout_of(*spec) : std::chrono::seconds(60);

  LibvirtConnection conn(uri);
  auto d = conn.lookup(name);
  if (!d) {
    fmt::print("domain {} is not defined at {}; nothing to undefine\n", name, conn.uri());
    return 0;
  }
  if (!a.count("force")) require_defined_by_sprout(*d, conn.uri(), "undefining");
  std::string how = d->stop(timeout);
  if (d->is_persistent()) d->undefine(kSproutUndefineFlags);
  fmt::print("domain {} undefined at {} ({}); disks and state directory kept\n", name, conn.uri(), how);
  return 0;
}

const Command kUndefineCommand = {"undefine", "stop and undefine a libvirt domain, keeping its disks",
    "Stop a VM's libvirt domain gracefully and undefine it. Its overlay, exported disks and\n"
    "state directory stay; libvirt's NVRAM/TPM state is kept too. The URI comes from --uri,\n"
    "else the VM's spec (--spec, or NAME.json or the spec named NAME in --spec-dir),\n"
    "else qemu:///system.",
    Needs::nothing, undefine_options, cmd_undefine};

}  // namespace sprout
