// How `sprout run` confines qemu: the user it becomes once it has opened every file
// (QEMU's -runas on 7.2, -run-with user= on 9.0 and later, chosen by what the binary's
// -help offers), and QEMU's seccomp sandbox (-sandbox, where the binary has it).
// Nothing changes a file's owner: qemu opens the overlay, the exported disks, the
// sockets, the console log and /dev/kvm as root and keeps those descriptors, so after
// the switch it needs no file at all (a guest's reboot reopens nothing). The user is
// the spec's "qemuUser": "dynamic" (a uid of its own per VM, dynamic_uid.h), a user's
// name, or "root" (only when named, with a warning).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "spec/spec.h"

namespace sprout {

/// What a qemu binary can do to confine itself.
struct QemuFeatures {
  enum class UserSwitch { none, runas, run_with };
  UserSwitch user_switch = UserSwitch::none;  ///< -runas USER (to 9.x), -run-with user=USER (9.0 on)
  bool sandbox = false;                       ///< -sandbox on,... (built with libseccomp)
  bool started = false;                       ///< false: the binary could not be run at all
  std::string why_not;                        ///< "" or why the binary could not be asked
};

/// What `qemu -help` says (pure).
QemuFeatures parse_qemu_help(std::string_view help);
/// Asks the binary (`qemu -help`, 20 s at most).
QemuFeatures qemu_features(const std::string& qemu_binary);

/// Who qemu runs as once its files are open.
struct QemuUser {
  enum class Kind {
    invoking,  ///< sprout is not root: qemu runs as the same unprivileged user, no switch
    root,      ///< "qemuUser": "root": no switch, asked for by name
    named,     ///< a user of the host's database
    dynamic,   ///< a uid of its own, claimed for the run (uid/gid set once claimed)
  };
  Kind kind = Kind::invoking;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name;  ///< named: the user's name

  bool switches() const { return kind == Kind::named || kind == Kind::dynamic; }
  /// For messages: "uid 1936719873 (a uid of its own)", "user sprout-qemu (uid 998)", ...
  std::string describe() const;
};

/// The spec's qemuUser on this host, for a sprout running as `euid`. InputError, before
/// anything is written, when the named user does not exist, when switching needs root
/// and sprout is not root, or when the binary cannot switch users.
QemuUser resolve_qemu_user(const Spec& spec, const QemuFeatures& features, uid_t euid);

/// The qemu arguments that confine it (they go right after -nodefaults): the user
/// switch (a dynamic user must have its uid by now) and the sandbox. `spawns_helper`:
/// qemu must start a program (qemu-bridge-helper for network.mode "bridge"); for an
/// unprivileged sprout that helper must elevate, so there is no sandbox then.
std::vector<std::string> confinement_args(const QemuUser& user, const QemuFeatures& features, bool spawns_helper);

}  // namespace sprout
