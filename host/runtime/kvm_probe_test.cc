// The KVM probe's guest code and command line; the probe itself runs against a real
// qemu under TCG (the guest code is right) and a qemu that aborts as a KVM that cannot
// run guests does (the verdict says so, with qemu's words).
#include "runtime/kvm_probe.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "subprocess.h"

namespace sprout {
namespace {

namespace fs = std::filesystem;

TEST(KvmProbe, FirmwareHasItsCodeAtTheResetVector) {
  const std::string fw = kvm_probe_firmware();
  ASSERT_EQ(fw.size(), 64u * 1024);  // qemu wants a multiple of 64 KiB
  const std::string code("\xb0\x2a\xe6\xf4\xf4\xeb\xfd", 7);
  EXPECT_EQ(fw.substr(fw.size() - 16, code.size()), code);
}

TEST(KvmProbe, KvmCommandUsesTheCpuModelOfARun) {
  auto a = kvm_probe_command("qemu-system-x86_64", "/x/fw", "kvm");
  auto at = [&](const std::string& v) { return std::find(a.begin(), a.end(), v); };
  ASSERT_NE(at("-cpu"), a.end());
  EXPECT_EQ(*(at("-cpu") + 1), "host");
  EXPECT_EQ(*(at("-accel") + 1), "kvm");
  EXPECT_EQ(*(at("-bios") + 1), "/x/fw");
  auto t = kvm_probe_command("qemu-system-x86_64", "/x/fw", "tcg");
  EXPECT_EQ(std::find(t.begin(), t.end(), "-cpu"), t.end());
}

TEST(KvmProbe, GuestCodeRunsUnderSoftwareEmulation) {
  if (find_program("qemu-system-x86_64").empty()) GTEST_SKIP() << "no qemu-system-x86_64";
  KvmProbe p = run_kvm_probe("qemu-system-x86_64", "tcg", std::chrono::seconds(120));
  EXPECT_TRUE(p.runs) << p.why;
}

TEST(KvmProbe, AnAbortingQemuIsNoKvm) {
  const fs::path dir = fs::temp_directory_path() / ("kvm-probe-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path fake = dir / "qemu";
  {
    std::ofstream f(fake);
    f << "#!/bin/sh\necho 'error: failed to set MSR 0x10a to 0x69' >&2\n"
         "echo 'kvm_buf_set_msrs: Assertion failed.' >&2\nkill -ABRT $$\n";
  }
  fs::permissions(fake, fs::perms::owner_all);
  KvmProbe p = run_kvm_probe(fake.string(), "kvm", std::chrono::seconds(60));
  EXPECT_FALSE(p.runs);
  EXPECT_NE(p.why.find("signal 6"), std::string::npos) << p.why;
  ASSERT_FALSE(p.qemu_output.empty());
  EXPECT_EQ(p.qemu_output.back(), "kvm_buf_set_msrs: Assertion failed.");
  fs::remove_all(dir);
}

TEST(KvmProbe, TheVerdictIsKeptForThisBootAndThisBinary) {
  const fs::path dir = fs::temp_directory_path() / ("kvm-probe-cache-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  if (::geteuid() != 0) ::setenv("XDG_RUNTIME_DIR", dir.c_str(), 1);  // a place this user owns
  auto fake = [&](const char* name, const char* said) {
    const fs::path p = dir / name;
    std::ofstream(p) << "#!/bin/sh\necho '" << said << "' >&2\nexit 1\n";
    fs::permissions(p, fs::perms::owner_all);
    return p.string();
  };
  const std::string a = fake("qemu-a", "no kvm here (a)"), b = fake("qemu-b", "no kvm here (b)");
  KvmProbe first = kvm_verdict(a);
  EXPECT_FALSE(first.cached);
  EXPECT_FALSE(first.runs);
  KvmProbe again = kvm_verdict(a);
  EXPECT_TRUE(again.cached);
  EXPECT_EQ(again.why, first.why);
  ASSERT_FALSE(again.qemu_output.empty());
  EXPECT_EQ(again.qemu_output.back(), "no kvm here (a)");
  KvmProbe other = kvm_verdict(b);  // another binary: probed, not a's verdict
  EXPECT_FALSE(other.cached);
  ASSERT_FALSE(other.qemu_output.empty());
  EXPECT_EQ(other.qemu_output.back(), "no kvm here (b)");
  EXPECT_FALSE(kvm_verdict(a, /*reprobe=*/true).cached);
  fs::remove_all(dir);
}

TEST(KvmProbe, AQemuThatNeverRunsTheGuestMeetsTheDeadline) {
  const fs::path dir = fs::temp_directory_path() / ("kvm-probe-hang-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path fake = dir / "qemu";
  { std::ofstream(fake) << "#!/bin/sh\nexec sleep 600\n"; }
  fs::permissions(fake, fs::perms::owner_all);
  KvmProbe p = run_kvm_probe(fake.string(), "kvm", std::chrono::milliseconds(300));
  EXPECT_FALSE(p.runs);
  EXPECT_NE(p.why.find("did not run within"), std::string::npos) << p.why;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace sprout
