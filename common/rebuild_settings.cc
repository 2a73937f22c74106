#include "rebuild_settings.h"

namespace sprout {

using nlohmann::json;

json RebuildSettings::to_json() const {
  return json{{"mode", mode},
              {"target", target},
              {"extraArgs", extra_args},
              {"timeoutSeconds", timeout_seconds},
              {"maxAttempts", max_attempts},
              {"respecializeOnChange", respecialize_on_change}};
}

std::string default_rebuild_target(const std::string& mode) {
  return mode == "flake" ? "/etc/nixos#self" : "/etc/nixos/hosts/self/configuration.nix";
}

}  // namespace sprout
