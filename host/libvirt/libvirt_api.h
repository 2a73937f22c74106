// The libvirt C API, loaded with dlopen() on first use. Linking libvirt.so.0 directly
// makes every start of `sprout` load libvirt and the ~50 libraries behind it (about
// 25 ms here), even for commands that never talk to libvirt (export, run, status);
// systemd loads its optional heavy libraries the same way. The library is opened by
// the full path pkg-config gave at build time (NixOS has no default library path),
// then by its soname. The function pointers
// have the exact types of libvirt's own headers, so a call through them is checked
// by the compiler as a direct call would be.
#pragma once

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

namespace sprout {

#define SPROUT_LIBVIRT_FUNCTIONS(X)                                                                            \
  X(virInitialize) X(virSetErrorFunc) X(virGetLastError) X(virGetLastErrorMessage) X(virResetLastError)        \
  X(virConnectOpen) X(virConnectClose) X(virConnectGetCapabilities) X(virDomainLookupByName)                  \
  X(virDomainDefineXML) X(virDomainFree) X(virDomainIsActive) X(virDomainIsPersistent) X(virDomainGetID)     \
  X(virDomainGetUUIDString) X(virDomainGetXMLDesc) X(virDomainGetMetadata) X(virDomainCreate)                \
  X(virDomainShutdown) X(virDomainDestroy) X(virDomainUndefineFlags) X(virDomainSetAutostart)                \
  X(virEventRegisterDefaultImpl) X(virEventRunDefaultImpl) X(virConnectSetKeepAlive)                          \
  X(virConnectRegisterCloseCallback) X(virConnectUnregisterCloseCallback)                                     \
  X(virStreamNew) X(virStreamRecv) X(virStreamSend) X(virStreamFinish) X(virStreamAbort) X(virStreamFree)     \
  X(virStreamEventAddCallback) X(virStreamEventUpdateCallback) X(virStreamEventRemoveCallback)                \
  X(virDomainOpenChannel) X(virDomainOpenConsole)                                                             \
  X(virConnectListAllDomains) X(virStoragePoolLookupByName) X(virStoragePoolDefineXML) X(virStoragePoolBuild)  \
  X(virStoragePoolCreate) X(virStoragePoolIsActive) X(virStoragePoolSetAutostart) X(virStoragePoolRefresh)     \
  X(virStoragePoolGetXMLDesc) X(virStoragePoolFree) X(virStoragePoolListAllVolumes)                           \
  X(virStorageVolLookupByName) X(virStorageVolGetName) X(virStorageVolGetPath) X(virStorageVolGetXMLDesc)     \
  X(virStorageVolCreateXML) X(virStorageVolDelete) X(virStorageVolFree) X(virStorageVolUpload)                \
  X(virStreamSparseSendAll)

struct LibvirtApi {
#define SPROUT_LIBVIRT_MEMBER(f) decltype(&::f) f = nullptr;
  SPROUT_LIBVIRT_FUNCTIONS(SPROUT_LIBVIRT_MEMBER)
#undef SPROUT_LIBVIRT_MEMBER
};

/// libvirt, loaded and initialized (virInitialize, its default error printing to
/// stderr switched off) on the first call; thread-safe. Throws LibvirtError (see
/// libvirt_connection.h) naming the library and what to install when libvirt.so.0
/// or one of its functions cannot be loaded.
const LibvirtApi& libvirt_api();

}  // namespace sprout
