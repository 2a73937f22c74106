// sprout check-host: what this host can do for the VMs in the spec directory, one line
// per check (PASS, WARN or FAIL, and what to do), as libvirt's virt-host-validate does.
// Exit 1 when any check fails. Everything is looked at, nothing is changed (except the
// KVM probe's cached verdict, kvm_probe.h).
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "error.h"
#include "runtime/kvm_probe.h"
#include "runtime/qemu_confinement.h"
#include "spec/spec_dir.h"
#include "subprocess.h"
#include "base/terminal_text.h"
#include "cli/vm_locator.h"
#ifdef SPROUT_LIBVIRT_SO
#include "libvirt/libvirt_connection.h"
#include "libvirt/libvirt_disk_access.h"
#endif

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

enum class Verdict { pass, warn, fail };

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::pass: return "PASS";
    case Verdict::warn: return "WARN";
    case Verdict::fail: return "FAIL";
  }
  return "FAIL";
}

struct Check {
  std::string name;     ///< "qemu", "kvm", "state web", ...
  Verdict verdict;
  std::string message;  ///< what was found
  std::string fix;      ///< what to do ("" when it passes)
};

/// The first line `program --version` prints, or why it could not be run.
std::optional<std::string> version_of(const std::string& exe, std::string* why) {
  ProcessOptions o;
  o.argv = {exe, "--version"};
  o.timeout = std::chrono::seconds(20);
  o.max_capture_bytes = 64 * 1024;
  auto r = run_process(o);
  if (!r.ok()) {
    *why = fmt::format("`{} --version` {}", exe, r.describe());
    return std::nullopt;
  }
  auto lines = r.last_lines(50);
  return lines.empty() ? std::string("(no version)") : lines.front();
}

Check program_check(const std::string& name, const std::string& program, const std::string& fix_missing) {
  const std::string exe = find_program(program);
  if (exe.empty()) return {name, Verdict::fail, fmt::format("{} is not in PATH", program), fix_missing};
  std::string why;
  auto v = version_of(exe, &why);
  if (!v) return {name, Verdict::fail, why, fmt::format("check that {} runs", exe)};
  return {name, Verdict::pass, fmt::format("{}: {}", exe, *v), ""};
}

/// ssh-keygen, which mints each VM's host key: found, and seen to make an ed25519 key
/// (in a temporary directory; it has no --version).
Check ssh_keygen_check() {
  const std::string exe = find_program("ssh-keygen");
  if (exe.empty())
    return {"ssh-keygen", Verdict::fail, "ssh-keygen is not in PATH",
            "install ssh-keygen (Debian: openssh-client; NixOS: the package's wrapper adds it): each VM's ssh host "
            "key is minted with it"};
  char dir[] = "/tmp/sprout-check-host-XXXXXX";
  if (!::mkdtemp(dir)) return {"ssh-keygen", Verdict::warn, fmt::format("{} (not tried: no temporary directory)", exe), ""};
  ProcessOptions p;
  p.argv = {exe, "-q", "-t", "ed25519", "-N", "", "-C", "sprout check-host", "-f", std::string(dir) + "/key"};
  p.timeout = std::chrono::seconds(30);
  ProcessResult r = run_process(p);
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (!r.ok())
    return {"ssh-keygen", Verdict::fail, fmt::format("{} could not make an ed25519 key: {}", exe, r.describe()),
            fmt::format("check that {} runs", exe)};
  return {"ssh-keygen", Verdict::pass, fmt::format("{} makes ed25519 keys (each VM's host key)", exe), ""};
}

Check kvm_check(const std::string& qemu, bool reprobe, const std::vector<std::string>& insisting) {
  KvmProbe p = kvm_verdict(qemu, reprobe);
  std::string seen = p.why;
  if (!p.qemu_output.empty()) seen += fmt::format(" (qemu: {})", p.qemu_output.back());
  if (p.probe_ms > 0)
    seen += p.cached ? fmt::format("; verdict of this boot, cached (the probe took {} ms)", p.probe_ms)
                     : fmt::format("; the probe took {} ms", p.probe_ms);
  if (p.runs) return {"kvm", Verdict::pass, seen, ""};
  if (!insisting.empty())
    return {"kvm", Verdict::fail, seen,
            fmt::format("{} ask{} for \"accel\": \"kvm\" and will not start: set \"accel\": \"auto\" or \"tcg\" "
                        "there, or repair KVM on this host",
                        fmt::join(insisting, ", "), insisting.size() == 1 ? "s" : "")};
  return {"kvm", Verdict::warn, seen,
          "VMs run under software emulation (TCG), much slower; \"accel\": \"tcg\" in a spec chooses it "
          "without this warning"};
}

/// A directory sprout writes: it (or the nearest existing parent it would be made in)
/// must be writable here and not writable by other users.
Check directory_check(const std::string& name, const fs::path& dir, const std::string& mode_hint) {
  fs::path at = dir;
  std::error_code ec;
  while (!at.empty() && !fs::exists(at, ec) && at != at.parent_path()) at = at.parent_path();
  struct stat st {};
  if (::stat(at.c_str(), &st) != 0)
    return {name, Verdict::fail, fmt::format("{}: {}", at.string(), std::strerror(errno)),
            fmt::format("create {}", dir.string())};
  if (!S_ISDIR(st.st_mode))
    return {name, Verdict::fail, fmt::format("{} is not a directory", at.string()),
            fmt::format("move it away so {} can be made", dir.string())};
  const std::string what = at == dir ? dir.string() : fmt::format("{} (to be made in {})", dir.string(), at.string());
  if (::access(at.c_str(), W_OK | X_OK) != 0)
    return {name, Verdict::fail, fmt::format("{}: not writable here: {}", what, std::strerror(errno)),
            "run sprout as the user that owns it (root for the system's VMs)"};
  if (at == dir && (st.st_mode & S_IWOTH))
    return {name, Verdict::fail, fmt::format("{} is writable by every user (mode {:04o})", what, st.st_mode & 07777),
            fmt::format("chmod {} {}", mode_hint, dir.string())};
  if (at == dir && (st.st_mode & S_IWGRP))
    return {name, Verdict::warn, fmt::format("{} is writable by its group (mode {:04o})", what, st.st_mode & 07777),
            fmt::format("chmod {} {}", mode_hint, dir.string())};
  return {name, Verdict::pass, fmt::format("{} writable, mode {:04o}", what, st.st_mode & 07777), ""};
}

std::string gib(std::uint64_t bytes) { return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / (1ull << 30)); }

/// Free space where overlays grow: a VM's overlay takes up to its disk size.
Check space_check(const fs::path& dir, const std::vector<std::string>& vms) {
  fs::path at = dir;
  std::error_code ec;
  while (!at.empty() && !fs::exists(at, ec) && at != at.parent_path()) at = at.parent_path();
  struct statvfs sv {};
  if (::statvfs(at.c_str(), &sv) != 0)
    return {fmt::format("space {}", at.string()), Verdict::fail, std::strerror(errno), ""};
  const std::uint64_t free = static_cast<std::uint64_t>(sv.f_bavail) * sv.f_frsize;
  const std::uint64_t want = static_cast<std::uint64_t>(vms.size()) * (1ull << 30);
  const std::string msg = fmt::format("{} free on {} for {} VM{} ({})", gib(free), at.string(), vms.size(),
                                      vms.size() == 1 ? "" : "s", fmt::join(vms, ", "));
  if (free < want)
    return {fmt::format("space {}", at.string()), Verdict::warn, msg,
            "overlays grow as guests write (a rebuild writes a whole system): keep at least 1 GiB per VM free"};
  return {fmt::format("space {}", at.string()), Verdict::pass, msg, ""};
}

/// qemu-bridge-helper attaches a bridge only when /etc/qemu/bridge.conf allows it.
Check bridge_check(const std::string& bridge, const std::vector<std::string>& vms) {
  const std::string name = fmt::format("bridge {}", bridge);
  std::ifstream in("/etc/qemu/bridge.conf");
  if (!in)
    return {name, Verdict::fail, fmt::format("/etc/qemu/bridge.conf is missing ({} use bridge {})", fmt::join(vms, ", "), bridge),
            fmt::format("write \"allow {}\" to /etc/qemu/bridge.conf (the NixOS host module does)", bridge)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string verb, what;
    words >> verb >> what;
    if (verb == "allow" && (what == bridge || what == "all"))
      return {name, Verdict::pass, fmt::format("/etc/qemu/bridge.conf: {}", line), ""};
  }
  return {name, Verdict::fail, fmt::format("/etc/qemu/bridge.conf does not allow {} ({} use it)", bridge, fmt::join(vms, ", ")),
          fmt::format("add \"allow {}\" to /etc/qemu/bridge.conf", bridge)};
}

Check libvirt_check(const std::string& uri, const std::vector<std::string>& vms) {
  const std::string name = fmt::format("libvirt {}", uri);
#ifdef SPROUT_LIBVIRT_SO
  try {
    LibvirtConnection conn(uri);
    const std::string reach = fmt::format("reachable{}; used by {}",
                                          conn.has_kvm() ? ", offers KVM domains" : ", no KVM domains",
                                          fmt::join(vms, ", "));
    // Each VM's qemu as a uid of its own (docs/libvirt.md#who-may-read-the-exported-images).
    if (!local_system_libvirt(uri))
      return {name, Verdict::warn,
              reach + "; every VM's qemu runs as this daemon's one user (not the host's system daemon), so one "
                      "VM's qemu can read another's disks",
              "use qemu:///system, or confine each qemu with sVirt (AppArmor or SELinux)"};
    if (::geteuid() != 0)
      return {name, Verdict::warn,
              reach + "; sprout is not root here, so `define` gives no VM's qemu a uid of its own: every VM's qemu "
                      "runs as libvirt's one user and can read another's disks",
              "run sprout as root (as the NixOS module's units do)"};
    if (!conn.dac_qemu_uid())
      return {name, Verdict::warn, reach + "; libvirt reports no DAC security model, which gives each VM's qemu a "
                                           "uid of its own",
              "check security_driver in /etc/libvirt/qemu.conf"};
    return {name, Verdict::pass, reach + "; each VM's qemu runs as a uid of its own (DAC label)", ""};
  } catch (const std::exception& e) {
    return {name, Verdict::fail, for_terminal(e.what()), "start libvirtd (virtqemud) or fix libvirt.uri in the specs"};
  }
#else
  return {name, Verdict::fail, fmt::format("this sprout was built without libvirt ({} use it)", fmt::join(vms, ", ")),
          "build sprout with libvirt (libvirt-dev) or use backend \"qemu\""};
#endif
}

/// How qemu will be confined (qemu_confinement.h): whether this binary can switch
/// users and has a sandbox, and whether each qemu VM's "qemuUser" can be had here.
std::vector<Check> confinement_checks(const std::string& qemu, const std::vector<const Spec*>& on_qemu) {
  const QemuFeatures f = qemu_features(qemu);
  if (!f.started) return {};  // the qemu check says why it cannot run
  std::vector<Check> checks;
  const char* how = f.user_switch == QemuFeatures::UserSwitch::run_with ? "-run-with user=" : "-runas";
  if (f.user_switch == QemuFeatures::UserSwitch::none)
    checks.push_back({"qemu user", Verdict::fail, fmt::format("{} cannot switch to an unprivileged user ({})", qemu,
                                                             f.why_not.empty() ? "no -runas or -run-with in its -help" : f.why_not),
                      "use a qemu with -runas (to 9.x) or -run-with user= (9.0 on); VMs with another \"qemuUser\" "
                      "than \"root\" will not start"});
  else
    checks.push_back({"qemu user", Verdict::pass,
                      fmt::format("qemu drops root before the guest runs ({}): each VM's qemu as a uid of its own "
                                  "unless its \"qemuUser\" names one",
                                  how),
                      ""});
  if (f.sandbox)
    checks.push_back({"qemu sandbox", Verdict::pass, "qemu has a seccomp sandbox (-sandbox); sprout turns it on", ""});
  else
    checks.push_back({"qemu sandbox", Verdict::warn, fmt::format("{} has no seccomp sandbox (-sandbox)", qemu),
                      "use a qemu built with libseccomp (Debian's and NixOS's are)"});
  for (const Spec* s : on_qemu) {
    const std::string name = fmt::format("qemu user {}", s->name);
    if (s->qemu_user == "root") {
      checks.push_back({name, Verdict::warn, fmt::format("{} runs its qemu as root (\"qemuUser\": \"root\")", s->name),
                        "leave \"qemuUser\" out for a uid of the VM's own, unless root is really needed"});
      continue;
    }
    if (f.user_switch == QemuFeatures::UserSwitch::none) continue;  // said above
    try {
      resolve_qemu_user(*s, f, ::geteuid());
    } catch (const InputError& e) {
      checks.push_back({name, Verdict::fail, for_terminal(e.what()), ""});
    }
  }
  return checks;
}

std::vector<Check> run_checks(const fs::path& spec_dir, const std::string& qemu, bool reprobe) {
  std::vector<Check> checks;
  std::vector<Spec> specs;
  std::error_code ec;
  if (!fs::is_directory(spec_dir, ec)) {
    checks.push_back({"specs", Verdict::pass, fmt::format("{}: no spec directory (no VM to check for)", spec_dir.string()), ""});
  } else {
    std::size_t broken = 0;
    for (auto& f : load_spec_dir(spec_dir)) {
      if (f.spec) {
        specs.push_back(std::move(*f.spec));
      } else {
        ++broken;
        checks.push_back({fmt::format("spec {}", f.path.filename().string()), Verdict::fail, for_terminal(f.problem),
                          "fix the spec (`sprout check-spec` checks it)"});
      }
    }
    if (broken == 0)
      checks.push_back({"specs", Verdict::pass, fmt::format("{} VM{} in {}", specs.size(), specs.size() == 1 ? "" : "s",
                                                           spec_dir.string()), ""});
  }
  std::vector<std::string> on_qemu, insisting_kvm, host_built;
  std::vector<const Spec*> qemu_specs;
  std::map<std::string, std::vector<std::string>> libvirt_uris, bridges, space;
  std::set<fs::path> caches;
  for (const auto& s : specs) {
    if (s.backend == Backend::libvirt)
      libvirt_uris[s.libvirt_uri].push_back(s.name);
    else
      on_qemu.push_back(s.name), qemu_specs.push_back(&s);
    if (s.accel == Accel::kvm) insisting_kvm.push_back(s.name);
    if (s.host_built()) host_built.push_back(s.name);
    if (s.backend == Backend::qemu && s.network.mode == NetworkMode::bridge) bridges[s.network.bridge].push_back(s.name);
    space[s.state_dir.parent_path().string()].push_back(s.name);
    caches.insert(s.cache_dir);
  }
  checks.push_back(program_check("qemu", qemu, "install QEMU (Debian: qemu-system-x86; NixOS: the host module adds it)"));
  checks.push_back(kvm_check(qemu, reprobe, insisting_kvm));
  for (auto& c : confinement_checks(qemu, qemu_specs)) checks.push_back(std::move(c));
  checks.push_back(program_check("qemu-img", "qemu-img", "install qemu-img (Debian: qemu-utils)"));
  // Every VM's ssh host key is minted with it on its first prepare.
  checks.push_back(ssh_keygen_check());
  for (const auto& [uri, vms] : libvirt_uris) checks.push_back(libvirt_check(uri, vms));
  if (!host_built.empty())
    checks.push_back(program_check("nix", "nix-store",
                                   fmt::format("host-built VMs ({}) need Nix on the host: install it or use "
                                               "\"specialize\": \"guest\"",
                                               fmt::join(host_built, ", "))));
  for (const auto& s : specs) checks.push_back(directory_check(fmt::format("state {}", s.name), s.state_dir, "0750"));
  for (const auto& c : caches) checks.push_back(directory_check("cache", c, "0711"));
  for (const auto& [dir, vms] : space) checks.push_back(space_check(dir, vms));
  for (const auto& [br, vms] : bridges) checks.push_back(bridge_check(br, vms));
  return checks;
}

}  // namespace

namespace {

void check_host_options(cxxopts::Options& o) {
  o.add_options()("json", "print the checks as a JSON array")(
      "qemu", "the qemu binary", cxxopts::value<std::string>()->default_value("qemu-system-x86_64"), "PROGRAM")(
      "reprobe", "probe KVM again instead of using this boot's cached verdict");
}

}  // namespace

int cmd_check_host(const Invocation& inv) {
  const auto& a = inv.args;
  auto checks = run_checks(inv.spec_dir, a["qemu"].as<std::string>(), a.count("reprobe") > 0);
  bool failed = false;
  for (const auto& c : checks) failed = failed || c.verdict == Verdict::fail;
  if (a.count("json")) {
    json out = json::array();
    for (const auto& c : checks)
      out.push_back({{"check", c.name}, {"result", verdict_name(c.verdict)}, {"message", c.message}, {"fix", c.fix}});
    std::cout << out.dump(2) << "\n";
  } else {
    for (const auto& c : checks) {
      std::cout << fmt::format("{}  {:<14} {}\n", verdict_name(c.verdict), for_terminal(c.name), for_terminal(c.message));
      if (!c.fix.empty()) std::cout << fmt::format("      {:<14} -> {}\n", "", for_terminal(c.fix));
    }
  }
  return failed ? 1 : 0;
}

const Command kCheckHostCommand = {"check-host", "what this host can do: qemu, KVM, libvirt, nix, directories, space",
    "Check what this host can do for the VMs in the spec directory, one line per check:\n"
    "PASS, WARN or FAIL, and what to do. qemu and its version; KVM (whether a probe guest\n"
    "runs under `qemu -accel kvm -cpu host`, the verdict cached per boot); qemu-img; ssh-keygen\n"
    "(each VM's host key is minted with it); libvirt\n"
    "for each libvirt.uri of a spec; nix when a VM is host-built; the state and cache\n"
    "directories; free space for overlays; /etc/qemu/bridge.conf for bridged VMs.\n"
    "Exit status: 0 no check failed (warnings allowed), 1 a check failed, 2 bad input.",
    Needs::spec_dir, check_host_options, cmd_check_host};

}  // namespace sprout
