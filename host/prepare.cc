#include "prepare.h"

#include <fmt/format.h>

#include "gc_roots.h"

namespace sprout {

namespace fs = std::filesystem;

PreparedVm prepare_vm(const Spec& spec) {
  require_base_image(spec);  // before export writes anything
  PreparedVm p;
  p.exported = export_disks(ExportRequest::from_spec(spec));
  p.overlay = prepare_overlay(spec);
  p.gc_root = register_gc_root(spec.gc_root_dir, spec.name, p.overlay.backing);
  // An overlay kept aside still needs its old base: it gets a root of its own, named
  // NAME@FILE, which `sprout gc` keeps while STATE/FILE exists.
  if (p.overlay.moved_aside)
    register_gc_root(spec.gc_root_dir, spec.name + "@" + p.overlay.moved_aside->filename().string(),
                     p.overlay.moved_aside_backing);
  return p;
}

}  // namespace sprout
