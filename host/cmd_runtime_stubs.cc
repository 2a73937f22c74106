// Runtime commands (run, watch, status, wait): not built yet, and they say so.
#include <spdlog/spdlog.h>

#include "commands.h"

namespace sprout {

namespace {
int not_yet(const char* name) {
  spdlog::error("`sprout {}` is not implemented in this version", name);
  return 1;
}
}  // namespace

int cmd_run(const Args&) { return not_yet("run"); }
int cmd_watch(const Args&) { return not_yet("watch"); }
int cmd_status(const Args&) { return not_yet("status"); }
int cmd_wait(const Args&) { return not_yet("wait"); }

}  // namespace sprout
