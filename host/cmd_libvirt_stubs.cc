// libvirt commands: not built yet, and they say so.
#include <spdlog/spdlog.h>

#include "commands.h"

namespace sprout {

namespace {
int not_yet(const char* name) {
  spdlog::error("`sprout {}` is not implemented in this version", name);
  return 1;
}
}  // namespace

int cmd_domain_xml(const Args&) { return not_yet("domain-xml"); }
int cmd_define(const Args&) { return not_yet("define"); }
int cmd_undefine(const Args&) { return not_yet("undefine"); }
int cmd_stop(const Args&) { return not_yet("stop"); }

}  // namespace sprout
