// vm_uid_registry: a libvirt VM's uid is recorded once and kept across defines, never
// given to a second VM, skipped by dynamic claims (and skips theirs), freed by release.
#include "runtime/vm_uid_registry.h"

#include <gtest/gtest.h>

#include <fstream>

#include "base/temp_dir.h"
#include "runtime/dynamic_uid.h"

using namespace sprout;
namespace fs = std::filesystem;

namespace {

VmUidRegistry registry_in(const TempDir& dir) { return VmUidRegistry{dir.path() / "vm-uids", dir.path() / "qemu-uids"}; }

}  // namespace

TEST(VmUidRegistry, OneUidPerVmKeptUntilReleased) {
  TempDir dir("vm-uids");
  const auto reg = registry_in(dir);
  EXPECT_FALSE(reg.recorded("web", "/var/lib/sprout/vms/web"));
  const uid_t web = reg.assign("web", "/var/lib/sprout/vms/web");
  EXPECT_GE(web, kDynamicUidFirst);
  EXPECT_LT(web - kDynamicUidFirst, kDynamicUidCount);
  EXPECT_EQ(reg.assign("web", "/var/lib/sprout/vms/web"), web);  // a re-define
  EXPECT_EQ(reg.assign("web", "/var/lib/sprout/vms/./web"), web);  // the same directory, spelled otherwise
  EXPECT_EQ(reg.recorded("web", "/var/lib/sprout/vms/web"), web);
  EXPECT_TRUE(reg.taken(web));
  const uid_t db = reg.assign("db", "/var/lib/sprout/vms/db");
  // The same name in another state directory (another libvirt URI's VM) is another VM.
  const uid_t web2 = reg.assign("web", "/srv/other/web");
  EXPECT_NE(db, web);
  EXPECT_NE(web2, web);
  EXPECT_NE(web2, db);
  EXPECT_EQ(fs::status(reg.dir).permissions(), fs::perms::owner_all);

  EXPECT_EQ(reg.release("web", "/var/lib/sprout/vms/web"), web);
  EXPECT_FALSE(reg.taken(web));
  EXPECT_FALSE(reg.recorded("web", "/var/lib/sprout/vms/web"));
  EXPECT_EQ(reg.release("web", "/var/lib/sprout/vms/web"), std::nullopt);
  EXPECT_EQ(reg.recorded("db", "/var/lib/sprout/vms/db"), db);
}

TEST(VmUidRegistry, NeverMeetsADynamicClaim) {
  TempDir dir("vm-uids-dynamic");
  const auto reg = registry_in(dir);
  const uid_t first = reg.assign("web", "/s/web");
  reg.release("web", "/s/web");
  // A qemu-backend run holds that uid now: the VM gets another.
  fs::create_directories(reg.dynamic_claims);
  std::ofstream(reg.dynamic_claims / std::to_string(first)) << "{}\n";
  const uid_t second = reg.assign("web", "/s/web");
  EXPECT_NE(second, first);
  // And a dynamic claim never takes a uid a libvirt VM holds, running or not.
  fs::remove(reg.dynamic_claims / std::to_string(first));
  const uid_t dynamic_first = DynamicUid::first_choice("web");
  std::ofstream(reg.dir / std::to_string(dynamic_first)) << R"({"vm":"x","stateDir":"/x"})" << "\n";
  DynamicUid claim = DynamicUid::claim(reg.dynamic_claims, "web", reg.dir);
  EXPECT_NE(claim.uid(), dynamic_first);
  EXPECT_NE(claim.uid(), second);
}
