// libvirt_disk_access: on real files (as root), a VM's uid may read the shared images
// and base it uses and nothing else, owns its own disks, cannot write or chmod a shared
// one; what libvirt's qemu user was given is taken back; destroy's close removes the
// uid's entries.
#include "libvirt/libvirt_disk_access.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "base/file_acl.h"
#include "base/temp_dir.h"

using namespace sprout;
namespace fs = std::filesystem;

namespace {

constexpr uid_t kVm = 1936719990, kOtherVm = 1936719991, kLibvirtQemu = 1936719992;

Spec spec_in(const fs::path& dir, const std::string& uri = "qemu:///system") {
  nlohmann::json j = {{"version", 1},
                      {"name", "web"},
                      {"backend", "libvirt"},
                      {"libvirt", {{"uri", uri}}},
                      {"base", {{"image", (dir / "base.qcow2").string()}}},
                      {"stateDir", (dir / "vms" / "web").string()},
                      {"cacheDir", (dir / "cache").string()},
                      {"sources", {{"config", "/cfg"}, {"self", "/cfg/hosts/web"}}}};
  return parse_spec(j.dump(), "web.json", dir);
}

void write(const fs::path& p, mode_t mode, uid_t owner = 0) {
  std::ofstream(p) << "bytes";
  ::chmod(p.c_str(), mode);
  if (::chown(p.c_str(), owner, owner) != 0) ADD_FAILURE() << "chown " << p;
}

/// Whether `uid` can open `path` with `flags`; with `chmod_ok`, also whether it could chmod it.
bool opens_as(uid_t uid, const fs::path& path, int flags, bool* chmod_ok = nullptr) {
  const bool try_chmod = chmod_ok != nullptr;
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(uid) != 0 || ::setuid(uid) != 0) ::_exit(9);
    const int fd = ::open(path.c_str(), flags);
    const bool ch = try_chmod && ::chmod(path.c_str(), 0666) == 0;
    ::_exit((fd >= 0 ? 1 : 0) | (ch ? 2 : 0));
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (chmod_ok) *chmod_ok = (WEXITSTATUS(st) & 2) != 0;
  return (WEXITSTATUS(st) & 1) != 0;
}

}  // namespace

TEST(LibvirtDiskAccess, OwnUidOnlyForTheLocalSystemDaemonAsRoot) {
  TempDir dir("disk-access-uri");
  const bool root = ::geteuid() == 0;
  EXPECT_EQ(vm_uid_applies(spec_in(dir.path())), root);
  EXPECT_EQ(vm_uid_applies(spec_in(dir.path(), "qemu:///system?socket=/run/x/libvirt-sock")), root);
  EXPECT_EQ(vm_uid_applies(spec_in(dir.path(), "qemu+unix:///system")), root);
  EXPECT_FALSE(vm_uid_applies(spec_in(dir.path(), "qemu:///session")));
  EXPECT_FALSE(vm_uid_applies(spec_in(dir.path(), "qemu:///systemx")));
  EXPECT_FALSE(vm_uid_applies(spec_in(dir.path(), "qemu+ssh://host/system")));
}

TEST(LibvirtDiskAccess, SharedDisksReadableByTheVmsUidOwnDisksItsOwn) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (chown, other uids)";
  TempDir dir("disk-access");
  const Spec spec = spec_in(dir.path());
  fs::create_directories(spec.state_dir);
  fs::create_directories(spec.cache_dir);
  for (const auto& d : {dir.path(), spec.state_dir, spec.state_dir.parent_path(), spec.cache_dir})
    ::chmod(d.c_str(), 0711);
  // A cached config image libvirt gave its qemu user under an earlier sprout (and that
  // user made writable), a self image as export leaves it, a base outside the store
  // also libvirt's qemu user's, the VM's own disks as prepare leaves them.
  const fs::path config = spec.cache_dir / "config-0123.ext4", self = spec.cache_dir / "self-4567.ext4";
  write(config, 0644, kLibvirtQemu);
  write(self, 0400);
  write(spec.base_image, 0600, kLibvirtQemu);
  write(spec.overlay_path(), 0600);
  write(spec.exported_image("secrets"), 0400);
  fs::create_symlink(config, spec.exported_image("config"));
  fs::create_symlink(self, spec.exported_image("self"));

  open_disks_to(spec, spec.base_image, kVm, kLibvirtQemu);

  for (const auto& shared : {config, self, spec.base_image}) {
    struct stat st {};
    ASSERT_EQ(::stat(shared.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 0u) << shared;
    EXPECT_EQ(st.st_mode & 0037, 0u) << shared;  // no group bits beyond the mask's r, nothing for others
    bool chmod_ok = true;
    EXPECT_TRUE(opens_as(kVm, shared, O_RDONLY, &chmod_ok)) << shared;
    EXPECT_FALSE(chmod_ok) << shared;
    EXPECT_FALSE(opens_as(kVm, shared, O_WRONLY)) << shared;
    EXPECT_FALSE(opens_as(kOtherVm, shared, O_RDONLY)) << shared;
    EXPECT_FALSE(opens_as(kLibvirtQemu, shared, O_RDONLY)) << shared;
  }
  EXPECT_EQ(fs::status(config).permissions(), fs::perms::owner_read | fs::perms::group_read);  // 0400 + mask r
  for (const auto& own : {spec.overlay_path(), spec.exported_image("secrets")}) {
    struct stat st {};
    ASSERT_EQ(::stat(own.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, kVm) << own;
    EXPECT_EQ(st.st_gid, kVm) << own;
    EXPECT_TRUE(opens_as(kVm, own, O_RDONLY)) << own;
    EXPECT_FALSE(opens_as(kOtherVm, own, O_RDONLY)) << own;
  }
  EXPECT_EQ(shared_disks(spec, spec.base_image).size(), 3u);

  // Destroy: the uid's entries go, from the images and the base.
  EXPECT_EQ(close_shared_disks_to(spec, spec.base_image, kVm), 3);
  for (const auto& shared : {config, self, spec.base_image}) EXPECT_FALSE(opens_as(kVm, shared, O_RDONLY)) << shared;
  EXPECT_EQ(close_shared_disks_to(spec, spec.base_image, kVm), 0);
}
