#include "libvirt/libvirt_pool_gc.h"

#include <filesystem>
#include <regex>

#include <spdlog/spdlog.h>

#include "libvirt/libvirt_pool.h"
#include "libvirt/volume_names.h"
#include "libvirt/volume_upload.h"

namespace sprout {

std::set<std::string> volumes_in_use(LibvirtConnection& conn, StoragePool& pool) {
  std::set<std::string> in_use;
  // What domains name: <source pool='P' volume='V'/> (and the file of a base any
  // definition spells out in a backingStore).
  static const std::regex vol_re(R"(<source\s+pool=['"]([^'"]*)['"]\s+volume=['"]([^'"]*)['"])");
  static const std::regex file_re(R"(<source\s+file=['"]([^'"]*)['"])");
  for (const auto& xml : conn.all_domain_xml()) {
    for (std::sregex_iterator it(xml.begin(), xml.end(), vol_re), end; it != end; ++it)
      if ((*it)[1].str() == pool.name()) in_use.insert((*it)[2].str());
    for (std::sregex_iterator it(xml.begin(), xml.end(), file_re), end; it != end; ++it)
      in_use.insert(std::filesystem::path((*it)[1].str()).filename().string());
  }
  // Overlays and their bases.
  for (const auto& n : pool.volume_names()) {
    if (parse_volume_name(n).kind != VolumeName::overlay) continue;
    in_use.insert(n);
    if (auto v = pool.volume(n)) {
      const std::string b = v->backing_path();
      if (!b.empty()) in_use.insert(std::filesystem::path(b).filename().string());
    }
  }
  return in_use;
}

PoolGcReport collect_pool_garbage(LibvirtConnection& conn, const std::string& pool_name,
                                  const std::set<std::string>& used, bool dry_run) {
  PoolGcReport r;
  auto pool = StoragePool::find(conn, pool_name);
  if (!pool) return r;
  r.pool_found = true;
  const auto all = pool->volume_names();
  const std::set<std::string> names(all.begin(), all.end());
  const std::set<std::string> in_use = volumes_in_use(conn, *pool);
  std::set<std::string> keep = used;
  keep.insert(in_use.begin(), in_use.end());
  std::vector<std::string> doomed;
  for (const auto& n : all) {
    const VolumeName v = parse_volume_name(n);
    if (!v.uploaded()) continue;
    if (keep.count(n) && upload_complete(names, n)) {
      r.kept.push_back(n);
      continue;
    }
    if (in_use.count(n)) {  // a VM's disk would go with it: never deleted
      spdlog::warn("pool {}: {} has no completion marker but a domain or an overlay depends on it: left as it is; "
                   "if it is whole, recreate its marker ({}), else destroy the VMs that use it",
                   pool_name, n, marker_volume_name(n));
      r.kept.push_back(n);
      continue;
    }
    if (keep.count(n)) spdlog::warn("pool {}: {} is named by a spec but is a partial upload: removed", pool_name, n);
    if (names.count(marker_volume_name(n))) doomed.push_back(marker_volume_name(n));
    doomed.push_back(n);
  }
  for (const auto& n : all)  // markers of volumes that are gone
    if (auto v = parse_volume_name(n); v.kind == VolumeName::marker && !names.count(v.target)) doomed.push_back(n);
  for (const auto& n : doomed) {
    if (!dry_run)
      if (auto v = pool->volume(n)) v->remove();
    r.removed.push_back(n);
  }
  return r;
}

}  // namespace sprout
