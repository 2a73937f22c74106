// `prepare`: export a VM's disks, create or check its root overlay, and register a
// GC root for its base. Shared by `sprout prepare` and `sprout run`.
#pragma once

#include <filesystem>
#include <optional>

#include "image/export.h"
#include "disk/overlay.h"
#include "spec/spec.h"

namespace sprout {

struct PreparedVm {
  ExportResult exported;
  PrepareResult overlay;
  std::optional<std::filesystem::path> gc_root;
};

/// Checks the base image and the overlay first (plan_overlay: InputError naming the
/// base when it is missing or not readable as its format), so a bad spec changes
/// nothing on disk.
PreparedVm prepare_vm(const Spec& spec);

/// The export of `spec`'s disks. A host-built VM's closure disk leaves out the base
/// system its guest will really have (overlay_origin.h): that of the overlay `plan`
/// keeps (reuse, keep, rebase), the spec's for a new overlay (create, recreate).
ExportRequest export_request_for(const Spec& spec, const OverlayPlan& plan);
/// The same for `sprout export` alone, which changes no overlay: the overlay on disk
/// as it is, the spec's baseSystem where there is none.
ExportRequest export_request_for(const Spec& spec);

/// STATE/export.json: what the VM's disks hold now (export_disks' result: generation,
/// images), replaced atomically; `sprout list` compares it with what the guest runs.
void record_export(const Spec& spec, const ExportResult& exported);
std::filesystem::path export_record_path(const Spec& spec);
/// The generation STATE/export.json names; "" when there is none (never exported).
std::string exported_generation(const Spec& spec);

}  // namespace sprout
