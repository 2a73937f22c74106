// libvirt commands in a build without libvirt (libvirt-dev not found, or
// -Dlibvirt=disabled): they say so. `sprout domain-xml` works in every build.
#include <spdlog/spdlog.h>

#include "cli/commands.h"

namespace sprout {

namespace {
int no_libvirt(const char* name) {
  spdlog::error("`sprout {}`: this build of sprout has no libvirt support (it was built without libvirt-dev; "
                "rebuild with libvirt-dev installed, meson option -Dlibvirt=enabled)",
                name);
  return 1;
}

int cmd_define(const Invocation&) { return no_libvirt("define"); }
int cmd_undefine(const Invocation&) { return no_libvirt("undefine"); }
}  // namespace

const Command kDefineCommand = {"define", "prepare, then define (and optionally start) the libvirt domain",
                                "Not in this build: it has no libvirt support.", Needs::nothing, nullptr,
                                cmd_define};
const Command kUndefineCommand = {"undefine", "stop and undefine a libvirt domain, keeping its disks",
                                  "Not in this build: it has no libvirt support.", Needs::nothing, nullptr,
                                  cmd_undefine};

}  // namespace sprout
