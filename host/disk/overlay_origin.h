// Which base a VM's overlay was made from, and so which Nix store its guest really
// has: STATE/overlay-origin.json, written by prepare when it creates or recreates the
// overlay (before the new overlay takes the name root.qcow2) and never believed for
// another file: it names the overlay's inode and the backing files under which the
// guest sees that base's contents (a safe rebase adds one). A host-built VM's closure
// disk leaves out the closure of the base system the guest really has: the recorded
// one while the overlay stays (reuse, keep, rebase), the spec's when a new overlay is
// made, the whole closure when that is not known.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "spec/spec.h"

namespace sprout {

struct OverlayOrigin {
  std::uint64_t overlay_inode = 0;
  /// The backing files the overlay may name while its guest sees `base_image`'s
  /// contents (canonical paths): the base itself, and each base a safe rebase moved it to.
  std::vector<std::filesystem::path> backing_files;
  std::filesystem::path base_image;  ///< the base the overlay was made on (canonical)
  std::string base_system;           ///< the spec's baseSystem then ("" = none)
};

/// Replaces STATE/overlay-origin.json atomically and durably.
void write_overlay_origin(const StateDir& state, const OverlayOrigin& origin);

/// The record, or nullopt with `why` saying why not (absent, unreadable, malformed).
std::optional<OverlayOrigin> read_overlay_origin(const StateDir& state, std::string& why);

/// The existing overlay as it is now: its inode and its backing file (canonical).
struct OverlayNow {
  std::uint64_t inode = 0;
  std::filesystem::path backing;
};

/// What the closure disk leaves out, and the one line that says why when it is not
/// simply the spec's baseSystem ("" = nothing to say).
struct ClosureBase {
  std::string base_system;  ///< "" = the whole closure
  std::string note;
};

/// The decision, from facts alone. `overlay`: the overlay the guest will boot when it
/// stays (reuse, keep, rebase), nullopt when a new one is made on the spec's base (or
/// there is none). `want`: the spec's base image (canonical). `in_store`: whether a
/// store path is in the host's store.
ClosureBase closure_base_for(const Spec& spec, const std::filesystem::path& want,
                             const std::optional<OverlayNow>& overlay, const std::optional<OverlayOrigin>& origin,
                             const std::string& why_no_origin,
                             const std::function<bool(const std::string&)>& in_store);

/// The same for the overlay on disk: reads the record, and the store, and logs the note.
std::string closure_base_system(const Spec& spec, const std::filesystem::path& want,
                                const std::optional<OverlayNow>& overlay);

}  // namespace sprout
