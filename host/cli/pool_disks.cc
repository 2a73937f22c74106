#include "cli/pool_disks.h"

#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "base/file_lock.h"
#include "libvirt/libvirt_pool_gc.h"
#include "libvirt/vm_volumes.h"

namespace sprout {

std::filesystem::path volumes_record_path(const Spec& spec) { return spec.state_dir / "volumes.json"; }

namespace {

std::filesystem::path lock_dir_of(const Spec& spec) { return spec.cache_dir / ".libvirt-pool-locks"; }

// The volumes STATE/volumes.json names, when it is this (uri, pool)'s.
std::vector<std::string> recorded_volumes(const Spec& spec) {
  std::ifstream in(volumes_record_path(spec));
  if (!in) return {};
  try {
    auto j = nlohmann::json::parse(in);
    if (j.at("uri") != spec.libvirt_uri || j.at("pool") != spec.libvirt_pool) return {};
    return j.at("volumes").get<std::vector<std::string>>();
  } catch (const std::exception& e) {
    spdlog::warn("{}: {} is unreadable ({}): its volumes are known only from its domain", spec.name,
                 volumes_record_path(spec).string(), e.what());
    return {};
  }
}

}  // namespace

std::vector<std::string> pool_disks_of(const Spec& spec) {
  if (!spec.libvirt_pool_mode()) return {};
  LibvirtConnection conn(spec.libvirt_uri);
  if (auto v = vm_overlay_volume(conn, spec))
    return {fmt::format("volume {} in storage pool {} at {}", *v, spec.libvirt_pool, conn.uri())};
  return {};
}

void delete_pool_disks(const Spec& spec) {
  if (!spec.libvirt_pool_mode()) return;
  LibvirtConnection conn(spec.libvirt_uri);
  auto lock = lock_pool(lock_dir_of(spec), conn.uri(), spec.libvirt_pool);
  for (const auto& n : remove_vm_volumes(conn, spec))
    fmt::print("{}: deleted volume {} from storage pool {} at {}\n", spec.name, n, spec.libvirt_pool, conn.uri());
}

void gc_pools(const std::vector<Spec>& specs, bool dry_run) {
  // (uri, pool) -> the volumes its specs use, and a spec to take the lock's place from.
  std::map<std::pair<std::string, std::string>, std::pair<std::set<std::string>, const Spec*>> pools;
  for (const auto& s : specs) {
    if (!s.libvirt_pool_mode()) continue;
    auto& [used, first] = pools[{s.libvirt_uri, s.libvirt_pool}];
    if (!first) first = &s;
    for (auto& v : recorded_volumes(s)) used.insert(std::move(v));
  }
  const char* verb = dry_run ? "would remove" : "removed";
  for (const auto& [key, entry] : pools) {
    const auto& [uri, pool] = key;
    LibvirtConnection conn(uri);
    auto lock = lock_pool(lock_dir_of(*entry.second), conn.uri(), pool);
    const auto r = collect_pool_garbage(conn, pool, entry.first, dry_run);
    if (!r.pool_found) continue;
    for (const auto& n : r.removed) fmt::print("{} volume {} from storage pool {} at {}\n", verb, n, pool, conn.uri());
    fmt::print("storage pool {} at {}: {} {} volume(s); {} volume(s) in use and every overlay kept\n", pool,
               conn.uri(), verb, r.removed.size(), r.kept.size());
  }
}

}  // namespace sprout
