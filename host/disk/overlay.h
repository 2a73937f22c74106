// The VM's root overlay: a qcow2 file in the state directory backed by the shared
// base image. It holds the VM's own state, so it is never overwritten or deleted:
// creation refuses to replace an existing file (renameat2 RENAME_NOREPLACE), and a
// base change is handled by the spec's policy (keep, rebase in safe mode only while
// the old base exists, or recreate: the new base is checked and the new overlay made
// before the old one gives up its name, so a kill at any instant leaves the VM on its
// old overlay or wholly on the new one, and the old one is always kept). Which base
// the overlay was made from is recorded beside it (overlay_origin.h).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "spec/spec.h"

namespace sprout {

struct OverlayInfo {
  std::string format;
  std::optional<std::filesystem::path> backing;  ///< as qemu-img reports it (absolute)
  std::optional<std::string> backing_format;
  std::uint64_t virtual_size = 0;
};

/// `qemu-img info --output=json` of an image (without following the backing chain).
OverlayInfo inspect_image(const std::filesystem::path& image);

struct PrepareResult {
  std::string action;  ///< created, reused, kept-old-base, rebased, recreated
  std::filesystem::path overlay;
  std::filesystem::path backing;             ///< the base the overlay now uses
  std::optional<std::filesystem::path> moved_aside;  ///< recreate: where the old overlay went
  std::filesystem::path moved_aside_backing;         ///< recreate: the base the old overlay still needs
};

/// InputError naming the spec key unless the spec's base image exists.
void require_base_image(const Spec& spec);

/// What prepare_overlay will do, decided by reading only, so that a prepare refuses a
/// bad base image or overlay before it writes anything (the disks, export.json).
struct OverlayPlan {
  enum Action { create, reuse, keep_old_base, rebase, recreate } action = create;
  std::filesystem::path overlay;
  std::filesystem::path want;  ///< the spec's base (canonical)
  std::filesystem::path have;  ///< the existing overlay's base
  std::uint64_t inode = 0;     ///< the existing overlay's inode
};

/// Throws what prepare_overlay would refuse: InputError for a base image that is
/// missing, or that qemu-img does not read as base.format where a new overlay goes on
/// it (create, rebase, recreate), or an overlay that is not a qcow2 overlay;
/// runtime_error for an old base that is gone where it is still needed.
OverlayPlan plan_overlay(const Spec& spec);

/// Carries out `plan` (plan_overlay's for the same spec). A new overlay (create,
/// recreate) gets its origin record (overlay_origin.h) before it takes its name; a safe
/// rebase adds the new base to the record's backing files.
PrepareResult apply_overlay(const Spec& spec, const OverlayPlan& plan);

/// Creates or checks the overlay for `spec`: plan_overlay, then apply_overlay.
PrepareResult prepare_overlay(const Spec& spec);

}  // namespace sprout
