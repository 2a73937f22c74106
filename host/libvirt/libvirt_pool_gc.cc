#include "libvirt/libvirt_pool_gc.h"

#include <filesystem>
#include <regex>

#include <spdlog/spdlog.h>

#include "libvirt/libvirt_pool.h"
#include "libvirt/volume_names.h"
#include "libvirt/volume_upload.h"

namespace sprout {

PoolGcReport collect_pool_garbage(LibvirtConnection& conn, const std::string& pool_name,
                                  const std::set<std::string>& used, bool dry_run) {
  PoolGcReport r;
  auto pool = StoragePool::find(conn, pool_name);
  if (!pool) return r;
  r.pool_found = true;
  const auto all = pool->volume_names();
  const std::set<std::string> names(all.begin(), all.end());
  std::set<std::string> keep = used;
  // What domains name: <source pool='P' volume='V'/> (and the file of a base any
  // definition spells out in a backingStore).
  static const std::regex vol_re(R"(<source\s+pool=['"]([^'"]*)['"]\s+volume=['"]([^'"]*)['"])");
  static const std::regex file_re(R"(<source\s+file=['"]([^'"]*)['"])");
  for (const auto& xml : conn.all_domain_xml()) {
    for (std::sregex_iterator it(xml.begin(), xml.end(), vol_re), end; it != end; ++it)
      if ((*it)[1].str() == pool_name) keep.insert((*it)[2].str());
    for (std::sregex_iterator it(xml.begin(), xml.end(), file_re), end; it != end; ++it)
      keep.insert(std::filesystem::path((*it)[1].str()).filename().string());
  }
  // Overlays and their bases.
  for (const auto& n : all) {
    if (parse_volume_name(n).kind != VolumeName::overlay) continue;
    keep.insert(n);
    if (auto v = pool->volume(n)) {
      const std::string b = v->backing_path();
      if (!b.empty()) keep.insert(std::filesystem::path(b).filename().string());
    }
  }
  std::vector<std::string> doomed;
  for (const auto& n : all) {
    const VolumeName v = parse_volume_name(n);
    if (!v.uploaded()) continue;
    if (keep.count(n) && upload_complete(names, n)) {
      r.kept.push_back(n);
      continue;
    }
    if (keep.count(n)) spdlog::warn("pool {}: {} is named by a spec or domain but is a partial upload: removed", pool_name, n);
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
