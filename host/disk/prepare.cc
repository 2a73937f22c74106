#include "disk/prepare.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "base/traversable_dirs.h"
#include "disk/gc_roots.h"
#include "disk/overlay_origin.h"
#include "strict_json.h"

namespace sprout {

namespace fs = std::filesystem;

PreparedVm prepare_vm(const Spec& spec) {
  // Whatever the overlay's preparation would refuse (a missing or unreadable base, a
  // file in the overlay's place) is found before export writes anything.
  const OverlayPlan plan = plan_overlay(spec);
  // A libvirt VM's qemu runs as libvirt's unprivileged user: the directories sprout
  // makes on its way to the state directory and the cache let it pass (0711), also
  // under a umask of 077, before export makes either.
  if (spec.backend == Backend::libvirt) {
    spec.state().make_private(true);
    make_traversable_dirs(spec.cache_dir);
  }
  PreparedVm p;
  p.exported = export_disks(export_request_for(spec, plan));
  record_export(spec, p.exported);
  p.overlay = apply_overlay(spec, plan);
  p.gc_root = register_gc_root(spec.gc_root_dir, spec.name, p.overlay.backing);
  // An overlay kept aside still needs its old base: it gets a root of its own, named
  // NAME@FILE, which `sprout gc` keeps while STATE/FILE exists.
  if (p.overlay.moved_aside)
    register_gc_root(spec.gc_root_dir, spec.name + "@" + p.overlay.moved_aside->filename().string(),
                     p.overlay.moved_aside_backing);
  // A host-built VM's closure disk leaves out the base system its overlay was made
  // with: that system stays safe from the host's garbage collector (a root named
  // NAME@overlay-origin.json, kept while the record is), or later exports would carry
  // the whole closure.
  std::string why;
  if (auto origin = spec.host_built() ? read_overlay_origin(spec.state(), why) : std::nullopt;
      origin && !origin->base_system.empty())
    register_gc_root(spec.gc_root_dir, spec.name + "@" + spec.state().overlay_origin().filename().string(),
                     origin->base_system);
  return p;
}

ExportRequest export_request_for(const Spec& spec, const OverlayPlan& plan) {
  ExportRequest req = ExportRequest::from_spec(spec);
  if (!spec.host_built()) return req;
  std::optional<OverlayNow> stays;
  if (plan.action != OverlayPlan::create && plan.action != OverlayPlan::recreate)
    stays = OverlayNow{plan.inode, plan.have};
  req.base_system = closure_base_system(spec, plan.want, stays);
  return req;
}

ExportRequest export_request_for(const Spec& spec) {
  ExportRequest req = ExportRequest::from_spec(spec);
  const fs::path overlay = spec.overlay_path();
  if (!spec.host_built() || !fs::exists(fs::symlink_status(overlay))) return req;
  std::optional<OverlayNow> now;
  try {
    OverlayInfo info = inspect_image(overlay);
    struct stat st;
    if (info.backing && ::stat(overlay.c_str(), &st) == 0) {
      std::error_code ec;
      now = OverlayNow{static_cast<std::uint64_t>(st.st_ino), fs::weakly_canonical(*info.backing, ec)};
      if (ec) now->backing = *info.backing;
    }
  } catch (const std::exception& e) {
    spdlog::warn("{}: {}", overlay.string(), e.what());
  }
  if (!now) {
    spdlog::warn("{}: not a qcow2 overlay sprout can read, so what its guest has is not known; its closure disk "
                 "holds the whole closure of {}",
                 overlay.string(), spec.system);
    req.base_system = "";
    return req;
  }
  req.base_system = closure_base_system(spec, fs::weakly_canonical(fs::absolute(spec.base_image)), now);
  return req;
}

std::filesystem::path export_record_path(const Spec& spec) { return spec.state().export_record(); }

std::string exported_generation(const Spec& spec) {
  std::ifstream in(export_record_path(spec), std::ios::binary);
  if (!in) return "";
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j;
  try {
    j = parse_json_loosely(text.str(), export_record_path(spec).string());
  } catch (const JsonTooDeep& e) {
    spdlog::warn("{} (taken as no export; the next export replaces it)", e.what());  // not what sprout writes
    return "";
  } catch (const InputError&) {
    return "";
  }
  if (!j.is_object() || !j.contains("generation") || !j["generation"].is_string()) return "";
  return j["generation"].get<std::string>();
}

void record_export(const Spec& spec, const ExportResult& exported) {
  write_file_atomic(export_record_path(spec), exported.to_json().dump(2) + "\n", StateDir::kFileMode);
}

}  // namespace sprout
