#include "image/source_generation.h"

#include <filesystem>
#include <functional>

#include <fmt/format.h>

#include "error.h"
#include "image/closure_image.h"
#include "image/digest_cache.h"
#include "image/listed_tree.h"
#include "image/ssh_filter.h"
#include "image/tree_digest.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

/// A config or self tree's digest, from the export's digest cache (read, never saved).
std::string tree_digest_now(const fs::path& source, const fs::path& cache_dir) {
  DigestCacheFile known(fs::absolute(cache_dir).lexically_normal(), source);
  TreeListing listing = list_tree(source, {}, known.known_files() + known.known_files() / 8);
  if (auto digest = known_content_digest(listing, known)) return *digest;
  return ListedTreeReader(listing).content_digest(&known);
}

}  // namespace

std::string source_generation(const ExportRequest& req) {
  const std::string config = tree_digest_now(req.config_source, req.cache_dir);
  const std::string self = tree_digest_now(req.self_source, req.cache_dir);
  std::string ssh;
  if (req.ssh_source) {
    SshFilter filter(req.allow_private_keys);
    TreeListing listing = list_tree(*req.ssh_source, std::ref(filter));
    ssh = ListedTreeReader(listing).content_digest();
  }
  const std::string closure = req.system.empty() ? "" : closure_key(req.system, req.base_system);
  return generation_id(config, self, ssh, req.rebuild.to_json().dump(), closure);
}

}  // namespace sprout
