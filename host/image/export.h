// `sprout export`: turns a VM's source directories into read-only ext4 disk images.
// Images live in a cache keyed by what goes into them, so identical trees used by
// many VMs share one file and an unchanged tree is not rebuilt; each VM's state
// directory gets a symlink per role (config.img, self.img, ssh.img and, for a VM the
// host specializes, closure.img: closure_image.h). The self image carries the
// manifest. The VM's secrets disk (secrets.img: its identity, minted on the first
// export, and its sources.secrets) is its own, built in the state directory and
// never cached (secrets_image.h). Every image is written atomically.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "disk_role.h"
#include "manifest.h"
#include "spec/spec.h"
#include "image/ssh_filter.h"

namespace sprout {

struct ExportRequest {
  std::string name;
  std::filesystem::path config_source, self_source;
  std::optional<std::filesystem::path> ssh_source;
  std::optional<std::filesystem::path> secrets_source;
  bool allow_private_keys = false;
  RebuildSettings rebuild;
  std::string system;       ///< host-built: the toplevel store path ("" = guest-built)
  std::string base_system;  ///< host-built, optional: the base's toplevel
  std::filesystem::path cache_dir;
  std::filesystem::path out_dir;  ///< where <role>.img links go (the state directory)

  static ExportRequest from_spec(const Spec& spec);
};

struct ExportedImage {
  DiskRole role;
  std::filesystem::path link;   ///< <out_dir>/<role>.img
  std::filesystem::path image;  ///< the cached image file
  std::string tree_digest;
  bool cache_hit = false;
  std::uint64_t bytes = 0;
};

struct ExportResult {
  std::vector<ExportedImage> images;
  Manifest manifest;
  std::string machine_id;  ///< the VM's (identity/vm_identity.h), for SMBIOS type 11
  std::vector<Exclusion> excluded;  ///< ssh files left out

  nlohmann::json to_json() const;
};

/// The disks an export of `spec` makes, in the order they are attached: config, self,
/// ssh (when the spec has sources.ssh), closure (host-built), secrets (always: the
/// VM's identity, and its sources.secrets). Reads nothing.
std::vector<DiskRole> exported_roles(const Spec& spec);

/// Validates the sources, computes digests, builds what the cache lacks, and points
/// the out_dir links at the images. InputError for bad sources.
ExportResult export_disks(const ExportRequest& request);

}  // namespace sprout
