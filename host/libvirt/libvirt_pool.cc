#include "libvirt/libvirt_pool.h"

#include <algorithm>
#include <cstdlib>
#include <regex>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "libvirt/libvirt_api.h"
#include "libvirt/libvirt_domain_xml.h"

namespace sprout {

namespace {
const LibvirtApi& lv() { return libvirt_api(); }

std::string take(char* s) {
  std::string out = s ? s : "";
  free(s);
  return out;
}
}  // namespace

std::string volume_permissions_xml(unsigned mode) {
  return fmt::format("<permissions><mode>{:04o}</mode><owner>0</owner><group>0</group></permissions>", mode);
}

StorageVolume::~StorageVolume() {
  if (v_) lv().virStorageVolFree(v_);
}

std::string StorageVolume::describe() const { return fmt::format("volume {} in {}", name_, where_); }

std::string StorageVolume::path() const {
  char* p = lv().virStorageVolGetPath(v_);
  if (!p) throw LibvirtError(fmt::format("{}: reading its path: {}", describe(), libvirt_last_error()));
  return take(p);
}

std::string StorageVolume::xml() const {
  char* x = lv().virStorageVolGetXMLDesc(v_, 0);
  if (!x) throw LibvirtError(fmt::format("{}: reading its XML: {}", describe(), libvirt_last_error()));
  return take(x);
}

std::string StorageVolume::backing_path() const {
  static const std::regex re(R"(<backingStore>[\s\S]*?<path>([^<]*)</path>)");
  const std::string x = xml();
  std::smatch m;
  if (!std::regex_search(x, m, re)) return "";
  // libvirt escapes the path as XML text; sprout's names need no unescaping but a
  // pool directory might: undo the five entities.
  std::string p = m[1].str();
  for (auto [from, to] : {std::pair{"&lt;", "<"}, {"&gt;", ">"}, {"&apos;", "'"}, {"&quot;", "\""}, {"&amp;", "&"}}) {
    for (std::size_t at; (at = p.find(from)) != std::string::npos;) p.replace(at, std::string_view(from).size(), to);
  }
  return p;
}

void StorageVolume::remove() {
  if (lv().virStorageVolDelete(v_, 0) < 0)
    throw LibvirtError(fmt::format("{}: deleting it: {}", describe(), libvirt_last_error()));
}

StoragePool::~StoragePool() {
  if (p_) lv().virStoragePoolFree(p_);
}

void StoragePool::fail(const std::string& what) const {
  throw LibvirtError(fmt::format("libvirt {}: storage pool {}: {}: {}", uri_, name_, what, libvirt_last_error()));
}

void StoragePool::start_if_inactive() {
  const int active = lv().virStoragePoolIsActive(p_);
  if (active < 0) fail("checking whether it is active");
  if (active == 0) {
    spdlog::info("libvirt {}: starting storage pool {}", uri_, name_);
    if (lv().virStoragePoolCreate(p_, 0) < 0) fail("starting it (virsh pool-start)");
  }
}

std::optional<StoragePool> StoragePool::find(LibvirtConnection& conn, const std::string& name) {
  virStoragePoolPtr p = lv().virStoragePoolLookupByName(conn.get(), name.c_str());
  if (!p) {
    virErrorPtr e = lv().virGetLastError();
    if (e && e->code == VIR_ERR_NO_STORAGE_POOL) {
      lv().virResetLastError();
      return std::nullopt;
    }
    throw LibvirtError(fmt::format("libvirt {}: looking up storage pool {}: {}", conn.uri(), name, libvirt_last_error()));
  }
  StoragePool pool(p, conn.get(), name, conn.uri());
  pool.start_if_inactive();
  return pool;
}

StoragePool StoragePool::ensure(LibvirtConnection& conn, const std::string& name, const std::filesystem::path& dir) {
  auto found = find(conn, name);
  if (!found) {
    const std::string xml = fmt::format(
        "<pool type='dir'>\n  <name>{}</name>\n  <target>\n    <path>{}</path>\n"
        "    <permissions><mode>0711</mode><owner>0</owner><group>0</group></permissions>\n  </target>\n</pool>\n",
        xml_escape(name), xml_escape(dir.string()));
    virStoragePoolPtr p = lv().virStoragePoolDefineXML(conn.get(), xml.c_str(), 0);
    if (!p)
      throw LibvirtError(fmt::format("libvirt {}: defining storage pool {} (a directory pool at {}): {}", conn.uri(),
                                     name, dir.string(), libvirt_last_error()));
    StoragePool pool(p, conn.get(), name, conn.uri());
    spdlog::info("libvirt {}: defined storage pool {} (directory {} on the daemon's host)", conn.uri(), name,
                 dir.string());
    if (lv().virStoragePoolBuild(p, 0) < 0)
      pool.fail(fmt::format("making its directory {}", dir.string()));
    if (lv().virStoragePoolSetAutostart(p, 1) < 0) pool.fail("setting it to autostart");
    pool.start_if_inactive();
    found.emplace(std::move(pool));
  }
  // Another client may have added or removed volumes (a killed upload's file stays).
  if (lv().virStoragePoolRefresh(found->p_, 0) < 0) {
    spdlog::warn("libvirt {}: storage pool {}: refreshing its volume list: {}", conn.uri(), name, libvirt_last_error());
    lv().virResetLastError();
  }
  return std::move(*found);
}

std::vector<std::string> StoragePool::volume_names() {
  virStorageVolPtr* vols = nullptr;
  const int n = lv().virStoragePoolListAllVolumes(p_, &vols, 0);
  if (n < 0) fail("listing its volumes");
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    if (const char* nm = lv().virStorageVolGetName(vols[i])) out.emplace_back(nm);
    lv().virStorageVolFree(vols[i]);
  }
  free(vols);
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<StorageVolume> StoragePool::volume(const std::string& name) {
  virStorageVolPtr v = lv().virStorageVolLookupByName(p_, name.c_str());
  if (!v) {
    virErrorPtr e = lv().virGetLastError();
    if (e && e->code == VIR_ERR_NO_STORAGE_VOL) {
      lv().virResetLastError();
      return std::nullopt;
    }
    fail(fmt::format("looking up volume {}", name));
  }
  return StorageVolume(v, name, fmt::format("pool {} at {}", name_, uri_));
}

StorageVolume StoragePool::create(const std::string& xml, const std::string& name) {
  virStorageVolPtr v = lv().virStorageVolCreateXML(p_, xml.c_str(), 0);
  if (!v) fail(fmt::format("creating volume {}", name));
  return StorageVolume(v, name, fmt::format("pool {} at {}", name_, uri_));
}

}  // namespace sprout
