#include "runtime/qemu_confinement.h"

#include <grp.h>
#include <pwd.h>

#include <chrono>
#include <sstream>

#include <fmt/format.h>

#include "error.h"
#include "subprocess.h"

namespace sprout {

QemuFeatures parse_qemu_help(std::string_view help) {
  QemuFeatures f;
  bool runas = false, run_with_user = false;
  std::istringstream in{std::string(help)};
  std::string line, option;
  while (std::getline(in, line)) {
    // Each option's first help line starts with it; continuation lines are indented.
    if (line.starts_with("-")) option = line.substr(0, line.find(' '));
    if (option == "-runas") runas = true;
    if (option == "-run-with" && line.find("user=") != std::string::npos) run_with_user = true;
    if (option == "-sandbox") f.sandbox = true;
  }
  // QEMU 9.0 added -run-with user= and deprecated -runas (9.1): prefer the new spelling.
  f.user_switch = run_with_user ? QemuFeatures::UserSwitch::run_with
                  : runas       ? QemuFeatures::UserSwitch::runas
                                : QemuFeatures::UserSwitch::none;
  return f;
}

QemuFeatures qemu_features(const std::string& qemu_binary) {
  ProcessOptions o;
  o.argv = {qemu_binary, "-help"};
  o.timeout = std::chrono::seconds(20);
  o.max_capture_bytes = 1 << 20;
  ProcessResult r = run_process(o);
  QemuFeatures f;
  if (r.ok()) f = parse_qemu_help(r.output);
  else f.why_not = fmt::format("`{} -help` {}", qemu_binary, r.describe());
  f.started = r.started;
  return f;
}

std::string QemuUser::describe() const {
  switch (kind) {
    case Kind::invoking: return fmt::format("the user sprout runs as (uid {}; not root, so no switch)", uid);
    case Kind::root: return "root (\"qemuUser\": \"root\")";
    case Kind::named: return fmt::format("user {} (uid {}, gid {})", name, uid, gid);
    case Kind::dynamic: return fmt::format("uid {} (a uid of its own for this run)", uid);
  }
  return "";
}

QemuUser resolve_qemu_user(const Spec& spec, const QemuFeatures& features, uid_t euid) {
  QemuUser u;
  const std::string& asked = spec.qemu_user;
  if (euid != 0) {
    // qemu runs unprivileged already; there is nothing to switch from, nor the right to.
    if (asked != kQemuUserDynamic && asked != "root")
      throw InputError(fmt::format("{}: \"qemuUser\": \"{}\" needs sprout to run as root (only root can switch "
                                   "qemu to another user); run it as root, or leave \"qemuUser\" out",
                                   spec.file.string(), asked));
    u.kind = QemuUser::Kind::invoking;
    u.uid = euid;
    return u;
  }
  if (asked == "root") {
    u.kind = QemuUser::Kind::root;
    return u;
  }
  if (features.user_switch == QemuFeatures::UserSwitch::none)
    throw InputError(fmt::format(
        "VM {}: this qemu cannot switch to an unprivileged user ({}), and sprout does not run a guest as root "
        "unless asked: use a qemu with -runas or -run-with user= (QEMU 2.x to 9.x have one), or set "
        "\"qemuUser\": \"root\" in {} to accept the risk",
        spec.name, features.why_not.empty() ? "its -help offers neither -runas nor -run-with user=" : features.why_not,
        spec.file.string()));
  if (asked == kQemuUserDynamic) {
    u.kind = QemuUser::Kind::dynamic;
    return u;
  }
  const struct passwd* pw = ::getpwnam(asked.c_str());
  if (!pw)
    throw InputError(fmt::format("{}: \"qemuUser\": \"{}\": no such user on this host; create it (a system user "
                                 "with no login, e.g. `useradd --system --no-create-home --shell /usr/sbin/nologin "
                                 "{}`), or leave \"qemuUser\" out for a uid of the VM's own",
                                 spec.file.string(), asked, asked));
  if (pw->pw_uid == 0 || pw->pw_gid == 0)
    throw InputError(fmt::format("{}: \"qemuUser\": \"{}\" is {} 0, root's; name a user whose uid and primary "
                                 "group are not root's, or write \"root\" if qemu is meant to run as root",
                                 spec.file.string(), asked, pw->pw_uid == 0 ? "uid" : "gid"));
  u.kind = QemuUser::Kind::named;
  u.name = asked;
  u.uid = pw->pw_uid;
  u.gid = pw->pw_gid;
  return u;
}

std::vector<std::string> confinement_args(const QemuUser& user, const QemuFeatures& features, bool spawns_helper) {
  std::vector<std::string> a;
  if (user.switches()) {
    if (user.kind == QemuUser::Kind::dynamic && user.uid == 0)
      throw std::logic_error("confinement_args: a dynamic user without its uid");
    // By number, so that a uid without a name (a dynamic one) works the same, and a
    // name is looked up once, by sprout.
    const std::string who = fmt::format("{}:{}", user.uid, user.gid);
    if (features.user_switch == QemuFeatures::UserSwitch::run_with)
      a.insert(a.end(), {"-run-with", "user=" + who});
    else
      a.insert(a.end(), {"-runas", who});
  }
  // Not root, a bridge: qemu-bridge-helper must gain privileges (set-uid, or file
  // capabilities), which the sandbox's no_new_privs would disarm in every mode.
  const bool helper_must_elevate = spawns_helper && user.kind == QemuUser::Kind::invoking;
  if (features.sandbox && !helper_must_elevate) {
    // elevateprivileges: QEMU installs the filter while parsing its options, before it
    // switches users, so "deny" kills it with SIGSYS at its own setgid (measured on
    // 7.2; LXD and Red Hat's QEMU tests allow it for the same reason). Once switched,
    // qemu has no privilege to regain, and spawn=deny keeps it from exec'ing a set-uid
    // program (loading the filter sets no_new_privs besides). spawn:
    // qemu-bridge-helper is started after the filter is in place.
    a.insert(a.end(), {"-sandbox", fmt::format("on,obsolete=deny,elevateprivileges={},spawn={},resourcecontrol=deny",
                                               user.switches() ? "allow" : "deny", spawns_helper ? "allow" : "deny")});
  }
  return a;
}

}  // namespace sprout
