// sprout stop / sprout destroy: end a VM's run gracefully, whichever backend runs it;
// remove a VM altogether. Nothing here deletes a VM's overlay (its data) unless the
// user asks for it by name (--delete-disks).
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "error.h"
#include "backend/backend.h"
#include "runtime/run_lock.h"
#include "status/run_state.h"
#include "spec/spec.h"
#include "status/status_store.h"
#include "cli/vm_locator.h"

namespace sprout {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;


int cmd_stop(const Invocation& inv) {
  Spec spec = *inv.vm;
  std::string how = backend_for(spec).stop(spec);
  fmt::print("{}: {}\n", spec.name, how == "not running" ? "not running; nothing to stop" : how);
  return 0;
}

const Command kStopCommand = {"stop", "stop a VM gracefully (either backend)",
    "Stop a VM gracefully, whichever backend runs it. qemu backend: its `sprout run` is asked\n"
    "(SIGTERM: power button, qemu quit after the spec's shutdownTimeoutSeconds, then kill).\n"
    "libvirt: ACPI shutdown, the same timeout, then destroy; a domain sprout did not define is\n"
    "refused. The definition and all disks stay. Exit 0 when the VM is not running any more.",
    Needs::one_vm, nullptr, cmd_stop};

namespace {

void destroy_options(cxxopts::Options& o) {
  o.add_options()("delete-disks", "also delete the VM's overlay disks (its data is lost)");
}

}  // namespace

int cmd_destroy(const Invocation& inv) {
  const auto& a = inv.args;
  Spec spec = *inv.vm;
  auto disks = spec.state().overlays();
  if (!disks.empty() && !a.count("delete-disks")) {
    std::string list;
    for (const auto& d : disks) list += "\n  " + d.string();
    throw InputError(fmt::format("{} has disks holding its data; nothing was changed. They are:{}\nMove them away "
                                 "first, or give --delete-disks to delete them with the VM",
                                 spec.name, list));
  }
  std::string how = backend_for(spec).remove(spec);
  fmt::print("{}: {}\n", spec.name, how);
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(spec.gc_root_dir, ec)) {
    std::string n = e.path().filename().string();
    if ((n == spec.name || n.rfind(spec.name + "@", 0) == 0) && fs::is_symlink(e.symlink_status())) {
      fs::remove(e.path());
      fmt::print("{}: removed GC root {}\n", spec.name, e.path().string());
    }
  }
  if (fs::exists(spec.state_dir, ec)) {
    for (const auto& d : disks) fmt::print("{}: deleting disk {}\n", spec.name, d.string());
    fs::remove_all(spec.state_dir);
    fmt::print("{}: removed {}\n", spec.name, spec.state_dir.string());
  }
  fmt::print("{}: destroyed (its spec {} stays; `sprout gc` removes cached images no VM uses)\n", spec.name,
             spec.file.string());
  return 0;
}

const Command kDestroyCommand = {"destroy", "remove a VM: stop, undefine, state directory (disks only if asked)",
    "Remove a VM: stop it, undefine its libvirt domain, remove its GC roots and its state\n"
    "directory. Its overlay (the VM's data) goes only with --delete-disks: without it, a VM that\n"
    "has one is refused and nothing is changed. The spec file and cached images stay (`sprout\n"
    "gc` removes images no VM uses).",
    Needs::one_vm, destroy_options, cmd_destroy};

}  // namespace sprout
