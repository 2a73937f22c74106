// The manifest: a small versioned JSON document on the per-VM `self` disk that tells
// the guest which VM it is, the digest of each exported disk, one generation id over
// all of them, the rebuild settings and, for a VM the host specializes, the system
// (toplevel store path) the closure disk holds. The guest parses it at boot, so the parser
// is strict and bounded (64 KiB, bounded strings and lists).
#pragma once

#include <optional>
#include <string>

#include "rebuild_settings.h"

namespace sprout {

inline constexpr int kManifestVersion = 1;
inline constexpr const char* kManifestFileName = "sprout-manifest.json";
inline constexpr std::size_t kMaxManifestBytes = 64 * 1024;

struct Manifest {
  std::string name;
  std::string generation;
  std::string config_digest;
  std::string self_digest;
  std::string ssh_digest;  ///< empty when the VM has no ssh disk
  /// A keyed digest of the VM's secrets (its secrets disk's secrets/), so a changed
  /// secret is a new generation; empty when it has no sources.secrets.
  std::string secrets_digest;
  /// Host-built: the system the guest switches to, and the closure disk's key.
  /// Both empty when the guest builds its own system (`nixos-rebuild boot`).
  std::string system;
  std::string closure_digest;
  bool host_built() const { return !system.empty(); }
  RebuildSettings rebuild;

  std::string to_json_text() const;
  bool operator==(const Manifest&) const = default;
};

/// Parses manifest text; InputError naming `source` and the key for anything wrong.
Manifest parse_manifest(std::string_view text, const std::string& source);

/// Reads and parses a manifest file (refusing files over kMaxManifestBytes).
Manifest load_manifest(const std::string& path);

}  // namespace sprout
