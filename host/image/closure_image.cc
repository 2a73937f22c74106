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
#include "image/ext4_writer.h"
#include "image/nar_writer.h"
#include "image/nix_store.h"
#include "nar_checksum.h"
#include "narinfo_index.h"
#include "base/sha256.h"
#include "store_path.h"

namespace sprout {

namespace fs = std::filesystem;

namespace {

/// Bumped whenever the disk's layout changes, so old cache entries are not reused.
constexpr const char* kClosureFormat = "sprout-closure-v4";

std::uint64_t round_up_block(std::uint64_t n) { return (n + 4095) / 4096 * 4096; }

/// Where the NAR of `path` goes in the cache: named by the path's hash, one per path.
std::string nar_file(const std::string& path) { return fmt::format("nar/{}.nar", store_path_hash(path)); }

[[noreturn]] void throw_changed(const PathRegistration& r, const std::string& found) {
  throw std::runtime_error(fmt::format("{}: its NAR ({}) does not match Nix's database ({} bytes, {}): the path was "
                                       "changed or is corrupt; check it with `nix-store --verify-path {}`, repair it "
                                       "with `nix-store --repair-path {}`, then export again",
                                       r.path, found, r.nar_size, r.nar_hash, r.path, r.path));
}

/// Writes the NAR of `r.path` into the image, read from the store once, and checks
/// what was written against Nix's record of the path: the guest trusts the narinfo,
/// so a path that no longer matches it (corrupted, or changing while read) fails the
/// export here, naming the path, instead of the guest's import later.
/// Returns the NAR's line of the checksum file (nar_checksum.h), whose XXH3 is of the
/// same bytes as the SHA-256 checked.
std::string write_checked_nar(Ext4Writer& w, const PathRegistration& r) {
  NarChecksum checksum;
  w.add_streamed_file(nar_file(r.path), 0444, r.nar_size, [&](const Ext4Writer::Sink& sink) {
    std::uint64_t written = 0;
    NarDump d = write_nar(r.path, [&](const char* data, std::size_t n) {
      written += n;
      if (written > r.nar_size) throw_changed(r, fmt::format("more than {} bytes", r.nar_size));
      checksum.update(data, n);
      sink(data, n);
    });
    if (d.size != r.nar_size || !same_nar_hash(r.nar_hash, d.sha256_hex))
      throw_changed(r, fmt::format("{} bytes, sha256:{}", d.size, d.sha256_hex));
  });
  return fmt::format("{} {} {}\n", nar_file(r.path), checksum.hex(), r.nar_hash);
}

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
  std::vector<PathRegistration> regs = nix_registrations(closure);  // sorted, as `closure`
  auto t_queried = std::chrono::steady_clock::now();
  std::vector<bool> handed(regs.size());
  for (std::size_t i = 0; i < regs.size(); ++i) {
    handed[i] = !std::binary_search(shared.begin(), shared.end(), regs[i].path);
    if (handed[i]) {
      ++out.paths;
      out.nar_bytes += regs[i].nar_size;
    }
  }
  nlohmann::json info{{"version", 1},
                      {"system", req.system},
                      {"baseSystem", req.base_system.empty() ? nlohmann::json(nullptr) : nlohmann::json(req.base_system)},
                      {"paths", out.paths},
                      {"narBytes", out.nar_bytes},
                      {"basePathsReferenced", shared.size()}};

  // The binary cache's files, as `nix copy --to file://DIR?compression=none` lays them
  // out (its three directories, nix-cache-info, one narinfo per path, the NARs in nar/),
  // written straight into the image.
  std::vector<std::pair<std::string, std::string>> small{{"nix-cache-info", kNixCacheInfo},
                                                         {kClosureInfoFile, info.dump(2) + "\n"}};
  // And all of them again in one file, which the guest reads instead (narinfo_index.h).
  std::string index;
  for (std::size_t i = 0; i < regs.size(); ++i) {
    std::string name = fmt::format("{}.narinfo", store_path_hash(regs[i].path));
    small.emplace_back(name, handed[i] ? narinfo_for(regs[i], nar_file(regs[i].path)) : narinfo_for_absent_path(regs[i]));
    index += narinfo_index_record(small.back().second);
  }
  small.emplace_back(kNarInfoIndexFile, std::move(index));
  TreeSize size;
  size.dirs = 3;
  for (const auto& [name, text] : small) {
    ++size.files;
    size.data_bytes += round_up_block(text.size());
  }
  std::uint64_t checksum_bytes = 0;
  for (std::size_t i = 0; i < regs.size(); ++i)
    if (handed[i]) {
      ++size.files;
      size.data_bytes += round_up_block(regs[i].nar_size);
      checksum_bytes += nar_file(regs[i].path).size() + 35 + regs[i].nar_hash.size();  // "URL XXH3 NARHASH\n"
    }
  ++size.files;
  size.data_bytes += round_up_block(checksum_bytes);

  PendingFile pending(out.image);
  {
    Ext4Writer w(pending.temp_path(), "sprout-closure", out.key, size);
    w.ensure_directories({"log", "nar", "realisations"});
    for (const auto& [name, text] : small) w.add_file(name, text, 0444);
    std::string checksums;
    for (std::size_t i = 0; i < regs.size(); ++i)
      if (handed[i]) checksums += write_checked_nar(w, regs[i]);
    w.add_file(kNarChecksumFile, checksums, 0444);
    w.finish();
  }
  auto t_written = std::chrono::steady_clock::now();
  fs::permissions(pending.temp_path(), fs::perms::owner_read);
  pending.commit_as(out.image);
  auto secs = [](auto from, auto to) { return std::chrono::duration<double>(to - from).count(); };
  auto t_done = std::chrono::steady_clock::now();
  spdlog::info("built closure image {} for {}: {} paths, {} MiB of NARs{} in {:.2f} s (Nix's database {:.2f} s, "
               "image {:.2f} s, commit {:.2f} s)",
               out.image.string(), req.system, out.paths, out.nar_bytes >> 20,
               shared.empty() ? "" : fmt::format(" ({} paths of the base left out)", shared.size()),
               secs(t0, t_done), secs(t0, t_queried), secs(t_queried, t_written), secs(t_written, t_done));
  return out;
}

}  // namespace sprout
