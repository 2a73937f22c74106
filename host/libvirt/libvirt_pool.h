// A libvirt storage pool and its volumes, as RAII wrappers over libvirt's C API (as
// libvirt_connection.h wraps domains). StoragePool::ensure gives the pool a spec names,
// defining a directory pool (root's, 0711) and starting it when the daemon has none,
// so a VM's disks can live on the daemon's host without a shared filesystem. Every
// failing call throws LibvirtError naming the pool or volume, the URI and libvirt's
// own message.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <libvirt/libvirt.h>

#include "libvirt/libvirt_connection.h"

namespace sprout {

class StorageVolume {
 public:
  StorageVolume(virStorageVolPtr v, std::string name, std::string where) : v_(v), name_(std::move(name)), where_(std::move(where)) {}
  StorageVolume(StorageVolume&& o) noexcept : v_(o.v_), name_(std::move(o.name_)), where_(std::move(o.where_)) { o.v_ = nullptr; }
  StorageVolume(const StorageVolume&) = delete;
  StorageVolume& operator=(const StorageVolume&) = delete;
  ~StorageVolume();

  const std::string& name() const { return name_; }
  /// Its file on the daemon's host (a directory pool's volumes are files).
  std::string path() const;
  std::string xml() const;
  /// The path its <backingStore> names (a qcow2 overlay's base), or "" when none.
  std::string backing_path() const;
  void remove();
  virStorageVolPtr get() const { return v_; }
  /// "volume NAME in pool POOL at URI", for messages.
  std::string describe() const;

 private:
  virStorageVolPtr v_;
  std::string name_, where_;
};

class StoragePool {
 public:
  /// The pool `name` of `conn`; when the daemon has none, a directory pool of that name
  /// at `dir` on the daemon's host is defined (dir 0711 root:root), built (the directory
  /// made; an existing one is kept) and set to autostart. An inactive pool is started.
  /// Its volume list is refreshed (a volume another client made or removed is seen).
  static StoragePool ensure(LibvirtConnection& conn, const std::string& name, const std::filesystem::path& dir);
  /// The pool, when the daemon has one of that name (started when inactive); nullopt otherwise.
  static std::optional<StoragePool> find(LibvirtConnection& conn, const std::string& name);

  StoragePool(StoragePool&& o) noexcept : p_(o.p_), conn_(o.conn_), name_(std::move(o.name_)), uri_(std::move(o.uri_)) {
    o.p_ = nullptr;
  }
  StoragePool(const StoragePool&) = delete;
  StoragePool& operator=(const StoragePool&) = delete;
  ~StoragePool();

  const std::string& name() const { return name_; }
  const std::string& uri() const { return uri_; }
  /// The names of its volumes, sorted.
  std::vector<std::string> volume_names();
  std::optional<StorageVolume> volume(const std::string& name);
  /// virStorageVolCreateXML; `name` is the volume's name in `xml`, for messages.
  StorageVolume create(const std::string& xml, const std::string& name);
  virStoragePoolPtr get() const { return p_; }
  virConnectPtr connection() const { return conn_; }

 private:
  StoragePool(virStoragePoolPtr p, virConnectPtr c, std::string name, std::string uri)
      : p_(p), conn_(c), name_(std::move(name)), uri_(std::move(uri)) {}
  void start_if_inactive();
  [[noreturn]] void fail(const std::string& what) const;
  virStoragePoolPtr p_;
  virConnectPtr conn_ = nullptr;
  std::string name_, uri_;
};

/// The <permissions> element of a volume's <target>: root's, with `mode`.
std::string volume_permissions_xml(unsigned mode);

}  // namespace sprout
