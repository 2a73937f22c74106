// How a guest rebuilds itself: the part of a VM's spec that travels to the guest in
// the manifest (classic or flake mode, target, extra arguments, limits). Shared by
// the host (spec, manifest writer) and the guest agent (manifest reader).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sprout {

struct RebuildSettings {
  std::string mode = "classic";  ///< "classic" or "flake"
  std::string target;            ///< config path (classic) or flake ref (flake)
  std::vector<std::string> extra_args;
  std::int64_t timeout_seconds = 3600;
  std::int64_t max_attempts = 3;
  bool respecialize_on_change = true;

  nlohmann::json to_json() const;
  bool operator==(const RebuildSettings&) const = default;
};

/// The default target for a mode, as the guest sees it.
std::string default_rebuild_target(const std::string& mode);

}  // namespace sprout
