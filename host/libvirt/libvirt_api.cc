#include "libvirt/libvirt_api.h"

#include <dlfcn.h>

#include <fmt/format.h>

#include "libvirt/libvirt_connection.h"

namespace sprout {

namespace {

constexpr const char* kLibrary = "libvirt.so.0";
#ifndef SPROUT_LIBVIRT_SO
#define SPROUT_LIBVIRT_SO "libvirt.so.0"
#endif

void quiet_errors(void*, virErrorPtr) {}

LibvirtApi load() {
  // The library sprout was built against, else whatever libvirt.so.0 the system has.
  void* lib = ::dlopen(SPROUT_LIBVIRT_SO, RTLD_NOW | RTLD_LOCAL);
  if (!lib) lib = ::dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (!lib)
    throw LibvirtError(fmt::format("the libvirt backend needs {} (Debian: apt-get install libvirt0): {}", kLibrary,
                                   ::dlerror()));
  LibvirtApi api;
#define SPROUT_LIBVIRT_LOAD(f)                                                                                  \
  api.f = reinterpret_cast<decltype(api.f)>(::dlsym(lib, #f));                                                 \
  if (!api.f) throw LibvirtError(fmt::format("{} has no function {}: libvirt is too old for sprout", \
                                             kLibrary, #f));
  SPROUT_LIBVIRT_FUNCTIONS(SPROUT_LIBVIRT_LOAD)
#undef SPROUT_LIBVIRT_LOAD
  api.virSetErrorFunc(nullptr, quiet_errors);
  if (api.virInitialize() != 0) throw LibvirtError("libvirt: virInitialize failed");
  return api;  // the library stays loaded for the life of the process
}

}  // namespace

const LibvirtApi& libvirt_api() {
  static const LibvirtApi api = load();  // a throw here is retried on the next call
  return api;
}

}  // namespace sprout
