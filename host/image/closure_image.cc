#include "image/closure_image.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "error.h"
#include "image/ext4_image.h"
#include "image/nix_store.h"
#include "base/scratch_dir.h"
#include "base/sha256.h"
#include "store_path.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

/// Bumped whenever the disk's layout changes, so old cache entries are not reused.
constexpr const char* kClosureFormat = "sprout-closure-v1";
constexpr auto kCopyTimeout = std::chrono::hours(2);

void check_toplevel(const std::string& path, const char* key, bool must_switch = true) {
  if (auto p = store_path_problem(path); !p.empty()) throw InputError(fmt::format("{}: {} {}", key, path, p));
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0)
    throw InputError(fmt::format("{}: {} does not exist in this host's Nix store (build it first, e.g. with "
                                 "nix-build or nixos-rebuild on the host)",
                                 key, path));
  std::string stc = path + "/bin/switch-to-configuration";
  if (must_switch && ::access(stc.c_str(), X_OK) != 0)
    throw InputError(fmt::format("{}: {} is not a NixOS system: it has no bin/switch-to-configuration (give "
                                 "config.system.build.toplevel)",
                                 key, path));
}

}  // namespace

std::string closure_key(const std::string& system, const std::string& base_system) {
  return sha256_hex(fmt::format("{}\nsystem {}\nbase {}\n", kClosureFormat, system,
                                base_system.empty() ? "-" : base_system));
}

ClosureImage build_closure_image(const ClosureRequest& req) {
  check_toplevel(req.system, "system");
  if (!req.base_system.empty()) check_toplevel(req.base_system, "baseSystem", false);
  ClosureImage out;
  out.key = closure_key(req.system, req.base_system);
  out.image = req.cache_dir / fmt::format("closure-{}.ext4", out.key.substr(0, 32));
  std::error_code ec;
  if (fs::is_regular_file(out.image, ec) && fs::file_size(out.image, ec) > 0) {
    out.cache_hit = true;
    return out;
  }

  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> closure = nix_requisites(req.system);
  std::vector<std::string> shared;  // in the system's closure and the base's: not on the disk
  if (!req.base_system.empty()) {
    std::vector<std::string> base = nix_requisites(req.base_system);
    std::set_intersection(closure.begin(), closure.end(), base.begin(), base.end(), std::back_inserter(shared));
  }
  ScratchDir staging(req.cache_dir);
  fs::path cache = staging.path / "cache";
  fs::create_directory(cache);
  for (const auto& r : nix_registrations(shared))
    write_file_atomic(cache / fmt::format("{}.narinfo", store_path_hash(r.path)), narinfo_for_absent_path(r), 0444);
  nix_copy_to_binary_cache(req.system, cache, kCopyTimeout);

  // What went on the disk: every path of the closure but the shared ones, each with
  // its NAR (checked here: a binary cache Nix wrote is what the guest trusts).
  std::vector<std::string> handed;
  std::set_difference(closure.begin(), closure.end(), shared.begin(), shared.end(), std::back_inserter(handed));
  for (const auto& p : handed) {
    fs::path narinfo = cache / fmt::format("{}.narinfo", store_path_hash(p));
    if (!fs::is_regular_file(narinfo, ec))
      throw std::runtime_error(fmt::format("nix copy left {} out of the closure cache", p));
  }
  for (const auto& e : fs::directory_iterator(cache / "nar", ec)) out.nar_bytes += e.file_size();
  out.paths = handed.size();
  nlohmann::json info{{"version", 1},
                      {"system", req.system},
                      {"baseSystem", req.base_system.empty() ? nlohmann::json(nullptr) : nlohmann::json(req.base_system)},
                      {"paths", out.paths},
                      {"narBytes", out.nar_bytes},
                      {"basePathsReferenced", shared.size()}};
  write_file_atomic(cache / kClosureInfoFile, info.dump(2) + "\n", 0444);

  PendingFile pending(out.image);
  build_ext4_image(cache, "sprout-closure", out.key, pending.temp_path());
  fs::permissions(pending.temp_path(), fs::perms::owner_read);
  pending.commit_as(out.image);
  spdlog::info("built closure image {} for {}: {} paths, {} MiB of NARs{} in {:.1f} s", out.image.string(), req.system,
               out.paths, out.nar_bytes >> 20,
               shared.empty() ? "" : fmt::format(" ({} paths of the base left out)", shared.size()),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return out;
}

}  // namespace sprout
