#include "disk/prepare.h"

#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "disk/gc_roots.h"
#include "strict_json.h"

namespace sprout {

namespace fs = std::filesystem;

PreparedVm prepare_vm(const Spec& spec) {
  // Whatever the overlay's preparation would refuse (a missing or unreadable base, a
  // file in the overlay's place) is found before export writes anything.
  const OverlayPlan plan = plan_overlay(spec);
  PreparedVm p;
  p.exported = export_disks(ExportRequest::from_spec(spec));
  record_export(spec, p.exported);
  p.overlay = apply_overlay(spec, plan);
  p.gc_root = register_gc_root(spec.gc_root_dir, spec.name, p.overlay.backing);
  // An overlay kept aside still needs its old base: it gets a root of its own, named
  // NAME@FILE, which `sprout gc` keeps while STATE/FILE exists.
  if (p.overlay.moved_aside)
    register_gc_root(spec.gc_root_dir, spec.name + "@" + p.overlay.moved_aside->filename().string(),
                     p.overlay.moved_aside_backing);
  return p;
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
  write_file_atomic(export_record_path(spec), exported.to_json().dump(2) + "\n");
}

}  // namespace sprout
