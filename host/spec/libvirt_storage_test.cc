#include "spec/libvirt_storage.h"

#include <gtest/gtest.h>

namespace sprout {

TEST(LibvirtStorage, LocalUrisHaveNoHostPart) {
  for (const char* u : {"qemu:///system", "qemu:///session", "qemu+unix:///system",
                        "qemu+unix:///system?socket=/tmp/x/libvirt-sock", "test:///default", "qemu://"}) {
    EXPECT_FALSE(libvirt_uri_is_remote(u)) << u;
    EXPECT_EQ(default_libvirt_storage(u), LibvirtStorage::files) << u;
  }
}

TEST(LibvirtStorage, AnyHostIsRemoteLocalhostToo) {
  for (const char* u : {"qemu+ssh://other/system", "qemu+ssh://root@other:2222/system", "qemu+tcp://10.0.0.2/system",
                        "qemu+ssh://localhost/system", "qemu+ssh://127.0.0.1/system?keyfile=/k", "qemu://h/system",
                        "qemu+ssh://[::1]/system", "myalias"}) {
    EXPECT_TRUE(libvirt_uri_is_remote(u)) << u;
    EXPECT_EQ(default_libvirt_storage(u), LibvirtStorage::pool) << u;
  }
}

TEST(LibvirtStorage, UserWithoutHostIsLocal) {
  EXPECT_FALSE(libvirt_uri_is_remote("qemu+ssh://user@/system"));
}

}  // namespace sprout
