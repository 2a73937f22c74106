#include "runtime/qemu_confinement.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "error.h"

using namespace sprout;

namespace {

// Lines of the real -help of QEMU 7.2 (Debian 12) and 9.2.
const char* kHelp72 =
    "-chroot dir     chroot to dir just before starting the VM\n"
    "-runas user     change to user id user just before starting the VM\n"
    "                user can be numeric uid:gid instead\n"
    "-sandbox on[,obsolete=allow|deny][,elevateprivileges=allow|deny|children]\n"
    "          [,spawn=allow|deny][,resourcecontrol=allow|deny]\n";
const char* kHelp92 =
    "-run-with [async-teardown=on|off][,chroot=dir][user=username|uid:gid]\n"
    "                Set miscellaneous QEMU process lifecycle options:\n"
    "-sandbox on[,obsolete=allow|deny][,elevateprivileges=allow|deny|children]\n";

Spec spec_with_user(const std::string& user) {
  Spec s;
  s.name = "web";
  s.file = "/etc/sprout/vms/web.json";
  s.qemu_user = user;
  return s;
}

bool has(const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); }

}  // namespace

TEST(QemuConfinement, HelpSaysHowToSwitchAndWhetherThereIsASandbox) {
  auto f = parse_qemu_help(kHelp72);
  EXPECT_EQ(f.user_switch, QemuFeatures::UserSwitch::runas);
  EXPECT_TRUE(f.sandbox);
  f = parse_qemu_help(kHelp92);
  EXPECT_EQ(f.user_switch, QemuFeatures::UserSwitch::run_with);
  f = parse_qemu_help("-chroot dir\n-name string\n");
  EXPECT_EQ(f.user_switch, QemuFeatures::UserSwitch::none);
  EXPECT_FALSE(f.sandbox);
}

TEST(QemuConfinement, ADynamicUserSwitchesByNumberInTheSandbox) {
  QemuUser u;
  u.kind = QemuUser::Kind::dynamic;
  u.uid = u.gid = 1936719873;
  auto a = confinement_args(u, parse_qemu_help(kHelp72), false);
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a[0], "-runas");
  EXPECT_EQ(a[1], "1936719873:1936719873");
  EXPECT_EQ(a[2], "-sandbox");
  // elevateprivileges=deny would kill qemu at its own setgid (the filter comes first).
  EXPECT_EQ(a[3], "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny");
  a = confinement_args(u, parse_qemu_help(kHelp92), true);
  EXPECT_EQ(a[0], "-run-with");
  EXPECT_EQ(a[1], "user=1936719873:1936719873");
  EXPECT_EQ(a[3], "on,obsolete=deny,elevateprivileges=allow,spawn=allow,resourcecontrol=deny");
}

TEST(QemuConfinement, RootOrAnUnprivilegedSproutDoesNotSwitchAndDeniesElevation) {
  QemuUser root;
  root.kind = QemuUser::Kind::root;
  auto a = confinement_args(root, parse_qemu_help(kHelp72), false);
  EXPECT_FALSE(has(a, "-runas"));
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[1], "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
  EXPECT_TRUE(confinement_args(root, parse_qemu_help("-name string\n"), false).empty());
}

TEST(QemuConfinement, AnUnprivilegedSproutWithABridgeHasNoSandbox) {
  QemuUser me;
  me.kind = QemuUser::Kind::invoking;
  me.uid = 1000;
  // The bridge helper must gain privileges; the filter's no_new_privs would forbid it.
  EXPECT_TRUE(confinement_args(me, parse_qemu_help(kHelp72), true).empty());
  EXPECT_EQ(confinement_args(me, parse_qemu_help(kHelp72), false).size(), 2u);
}

TEST(QemuConfinement, ResolvesTheSpecsUser) {
  auto f = parse_qemu_help(kHelp72);
  EXPECT_EQ(resolve_qemu_user(spec_with_user("dynamic"), f, 0).kind, QemuUser::Kind::dynamic);
  EXPECT_EQ(resolve_qemu_user(spec_with_user("root"), f, 0).kind, QemuUser::Kind::root);
  QemuUser nobody = resolve_qemu_user(spec_with_user("nobody"), f, 0);
  EXPECT_EQ(nobody.kind, QemuUser::Kind::named);
  EXPECT_EQ(nobody.uid, 65534u);
  // Not root: qemu runs as sprout's user; a named user cannot be switched to.
  EXPECT_EQ(resolve_qemu_user(spec_with_user("dynamic"), f, 1000).kind, QemuUser::Kind::invoking);
  EXPECT_THROW(resolve_qemu_user(spec_with_user("nobody"), f, 1000), InputError);
}

TEST(QemuConfinement, AMissingUserOrAQemuThatCannotSwitchIsAnInputError) {
  try {
    resolve_qemu_user(spec_with_user("no-such-user-here"), parse_qemu_help(kHelp72), 0);
    FAIL() << "a missing user accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-user-here\": no such user"), std::string::npos) << e.what();
  }
  try {
    resolve_qemu_user(spec_with_user("dynamic"), parse_qemu_help("-name string\n"), 0);
    FAIL() << "a qemu without -runas accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("\"qemuUser\": \"root\""), std::string::npos) << e.what();
  }
  // Root asked for by name needs no switch, so any qemu will do.
  EXPECT_EQ(resolve_qemu_user(spec_with_user("root"), parse_qemu_help("-name string\n"), 0).kind, QemuUser::Kind::root);
}
