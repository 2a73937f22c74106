// sprout stop / sprout destroy: end a VM's run gracefully, whichever backend runs it;
// remove a VM altogether. Nothing here deletes a VM's overlay (its data) unless the
// user asks for it by name (--delete-disks).
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <optional>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "error.h"
#include "backend/backend.h"
#include "disk/overlay.h"
#include "libvirt/libvirt_disk_access.h"
#include "runtime/run_lock.h"
#include "runtime/vm_uid_registry.h"
#include "status/run_state.h"
#include "spec/spec.h"
#include "status/status_store.h"
#include "cli/time_span.h"
#include "cli/pool_disks.h"
#include "cli/vm_locator.h"

namespace sprout {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;


namespace {

void stop_options(cxxopts::Options& o) {
  o.add_options()("force", "stop it hard, at once (as virsh destroy: qemu quits; disks and definition stay)")(
      "timeout", "how long the guest gets to power off before it is stopped hard (default: the spec's "
                 "shutdownTimeoutSeconds)",
      cxxopts::value<std::string>(), "SPAN");
}

}  // namespace

int cmd_stop(const Invocation& inv) {
  const auto& a = inv.args;
  Spec spec = *inv.vm;
  StopRequest request;
  if (a.count("force") && a.count("timeout")) throw InputError("--force and --timeout: give one (--force is --timeout 0)");
  if (a.count("force")) request.grace = std::chrono::seconds(0);
  if (a.count("timeout"))
    request.grace = std::chrono::seconds(
        static_cast<long long>(std::ceil(parse_time_span(a["timeout"].as<std::string>(), "timeout", 24 * 3600))));
  std::string how = backend_for(spec).stop(spec, request);
  fmt::print("{}: {}\n", spec.name, how == "not running" ? "not running; nothing to stop" : how);
  return 0;
}

const Command kStopCommand = {"stop", "stop a VM gracefully, or hard with --force (either backend)",
    "Stop a VM gracefully, whichever backend runs it. qemu backend: its `sprout run` is asked\n"
    "(SIGTERM: power button, qemu quit after the spec's shutdownTimeoutSeconds, then kill).\n"
    "libvirt: ACPI shutdown, the same timeout, then destroy; a domain sprout did not define is\n"
    "refused. The definition and all disks stay. --timeout SPAN gives the guest less time (it\n"
    "cannot give more than the spec's to a qemu VM); --force stops it hard at once, as virsh's\n"
    "destroy does (qemu quits; libvirt destroys the domain). Exit 0 when the VM is not\n"
    "running any more.",
    Needs::one_vm, stop_options, cmd_stop};

namespace {

void destroy_options(cxxopts::Options& o) {
  o.add_options()("delete-disks", "also delete the VM's overlay disks and its identity (its data is lost)");
}

}  // namespace

namespace {

// A libvirt VM's qemu uid (vm_uid_registry.h) is free again once its domain is gone,
// no cached image or base lets it read any more (the next VM given the uid must not
// read this one's images), and its own disks are gone with the state directory. Until
// then it stays recorded, so it is never given to another VM.
std::optional<uid_t> close_libvirt_uid(const Spec& spec, bool& all_closed) {
  all_closed = false;
  auto uid = host_vm_uid_registry().recorded(spec.name, spec.state_dir);
  if (!uid) return uid;
  std::filesystem::path backing = spec.base_image;
  std::error_code ec;
  if (fs::is_regular_file(spec.overlay_path(), ec)) {
    try {
      if (auto b = inspect_image(spec.overlay_path()).backing) backing = *b;
    } catch (const std::exception& e) {
      spdlog::warn("{}: its overlay's backing file is not known ({}); closing the spec's base", spec.name, e.what());
    }
  }
  int failed = 0;
  const int removed = close_shared_disks_to(spec, backing, *uid, &failed);
  all_closed = failed == 0;
  fmt::print("{}: {} image ACL entries of its qemu's uid {} removed{}\n", spec.name, removed, *uid,
             failed ? fmt::format(", {} could not be", failed) : "");
  return uid;
}

}  // namespace

int cmd_destroy(const Invocation& inv) {
  const auto& a = inv.args;
  Spec spec = *inv.vm;
  auto disks = spec.state().overlays();
  // Its identity (ssh host key, machine-id) is as much the VM's as its disk.
  std::error_code iec;
  if (fs::exists(fs::symlink_status(spec.state_dir / "identity", iec))) disks.push_back(spec.state_dir / "identity");
  // Pool mode: the overlay is a volume on the daemon's host.
  const auto volumes = spec.backend == Backend::libvirt ? pool_disks_of(spec) : std::vector<std::string>{};
  if ((!disks.empty() || !volumes.empty()) && !a.count("delete-disks")) {
    std::string list;
    for (const auto& d : disks) list += "\n  " + d.string();
    for (const auto& v : volumes) list += "\n  " + v;
    throw InputError(fmt::format("{} has disks holding its data (or its identity); nothing was changed. They "
                                 "are:{}\nMove them away "
                                 "first, or give --delete-disks to delete them with the VM",
                                 spec.name, list));
  }
  std::string how = backend_for(spec).remove(spec);
  fmt::print("{}: {}\n", spec.name, how);
  // Its own volumes only, never a shared one; and only when asked for by the flag (a
  // define between the look above and here may have made an overlay volume).
  if (spec.backend == Backend::libvirt && a.count("delete-disks")) delete_pool_disks(spec);
  bool uid_closed = false;
  std::optional<uid_t> libvirt_uid;
  if (spec.backend == Backend::libvirt) libvirt_uid = close_libvirt_uid(spec, uid_closed);
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
  if (libvirt_uid) {
    if (!uid_closed)
      throw std::runtime_error(fmt::format(
          "{}: its qemu's uid {} stays recorded in {} (never given to another VM): an image still lets it read (see "
          "the warnings above); fix that, then run destroy again",
          spec.name, *libvirt_uid, host_vm_uid_registry().dir.string()));
    host_vm_uid_registry().release(spec.name, spec.state_dir);
    fmt::print("{}: released its qemu's uid {}\n", spec.name, *libvirt_uid);
  }
  fmt::print("{}: destroyed (its spec {} stays; `sprout gc` removes cached images no VM uses)\n", spec.name,
             spec.file.string());
  return 0;
}

const Command kDestroyCommand = {"destroy", "delete a VM: stop, undefine, state directory (disks only if asked)",
    "Delete a VM (not virsh's destroy, a hard stop: that is `sprout stop --force`): stop it,\n"
    "undefine its libvirt domain, remove its GC roots and its state\n"
    "directory. Its overlay (the VM's data) goes only with --delete-disks: without it, a VM that\n"
    "has one is refused and nothing is changed. The spec file and cached images stay (`sprout\n"
    "gc` removes images no VM uses).",
    Needs::one_vm, destroy_options, cmd_destroy};

}  // namespace sprout
