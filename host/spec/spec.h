// The VM spec: one versioned JSON file per VM that says everything about it
// (docs/spec.md). load_spec() validates strictly: unknown keys, wrong types and bad
// values are InputErrors naming the file, the key path and what was expected.
// Defaults are filled in, relative paths resolved against the spec's directory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "rebuild_settings.h"
#include "error.h"
#include "spec/libvirt_storage.h"
#include "spec/state_dir.h"

namespace sprout {

inline constexpr int kSpecVersion = 1;
inline constexpr const char* kDefaultSpecDir = "/etc/sprout/vms";
inline constexpr const char* kDefaultCacheDir = "/var/lib/sprout/cache";
inline constexpr const char* kQemuUserDynamic = "dynamic";
inline constexpr const char* kDefaultGcRootDir = "/nix/var/nix/gcroots/sprout";

struct PortForward {
  std::string protocol = "tcp";
  std::string host_address;
  int host_port = 0;
  int guest_port = 0;
};

// The spec's closed sets, as enums that a switch covers; their JSON names (the
// strings in docs/spec.md) only at the edges: spec.cc reads them, name_of() writes them.
enum class NetworkMode { user, bridge, libvirt, none };
enum class Backend { qemu, libvirt };
enum class Specialize { guest, host };
enum class BaseChange { keep, rebase, recreate };
enum class Ready { specialized, started };

const char* name_of(NetworkMode m);
const char* name_of(Backend b);
const char* name_of(Specialize s);
const char* name_of(BaseChange c);
const char* name_of(Ready r);

// No silent JSON numbers: a spec enum goes into JSON by its name (name_of), never as
// nlohmann's default integer; these make `json j = spec.backend;` a compile error.
void to_json(nlohmann::json&, NetworkMode) = delete;
void to_json(nlohmann::json&, Backend) = delete;
void to_json(nlohmann::json&, Specialize) = delete;
void to_json(nlohmann::json&, BaseChange) = delete;
void to_json(nlohmann::json&, Ready) = delete;

struct NetworkSettings {
  NetworkMode mode = NetworkMode::user;
  std::vector<PortForward> forwards;
  std::string bridge = "br0";
  std::string libvirt_network = "default";
  std::string mac;  ///< always set after loading (derived from the name if not given)
};

struct KernelBoot {
  std::filesystem::path kernel;
  std::optional<std::filesystem::path> initrd;
  std::string cmdline;
};

/// How qemu runs the guest's CPU (spec key "accel").
enum class Accel {
  automatic,  ///< "auto": KVM where a probe guest was seen to run with sprout's CPU model (kvm_probe.h), else TCG
  kvm,        ///< "kvm": KVM or fail; never falls back
  tcg,        ///< "tcg": software emulation
};
/// "auto", "kvm" or "tcg".
const char* name_of(Accel a);
void to_json(nlohmann::json&, Accel) = delete;

struct Spec {
  std::filesystem::path file;  ///< where it was loaded from ("" if built in memory)
  std::string name;
  std::filesystem::path base_image;
  std::string base_format = "qcow2";
  std::filesystem::path state_dir;
  std::filesystem::path cache_dir = kDefaultCacheDir;
  std::filesystem::path gc_root_dir = kDefaultGcRootDir;
  std::filesystem::path config_source;
  std::filesystem::path self_source;
  std::optional<std::filesystem::path> ssh_source;
  /// sources.secrets: files for the VM alone, on its secrets disk (identity/secrets_source.h)
  std::optional<std::filesystem::path> secrets_source;
  bool allow_private_keys = false;
  std::uint64_t memory_bytes = 1024ull << 20;
  int vcpus = 1;
  std::optional<std::uint64_t> disk_size_bytes;
  RebuildSettings rebuild;
  /// Who builds the VM's system: the guest (nixos-rebuild boot in the VM) or the host
  /// (`system` is built on the host; its closure, less `base_system`'s, goes on the
  /// closure disk and the guest only imports it and switches).
  Specialize specialize = Specialize::guest;
  std::string system;       ///< host: the toplevel store path
  std::string base_system;  ///< host, optional: the base's toplevel ("" = none)
  bool host_built() const { return specialize == Specialize::host; }
  Backend backend = Backend::qemu;
  std::string libvirt_uri = "qemu:///system";
  /// libvirt.storage (default by the URI: default_libvirt_storage), libvirt.pool and
  /// libvirt.poolPath: where the VM's disks go (spec/libvirt_storage.h).
  LibvirtStorage libvirt_storage = LibvirtStorage::files;
  std::string libvirt_pool = kDefaultLibvirtPool;
  std::filesystem::path libvirt_pool_path = kDefaultLibvirtPoolPath;
  bool libvirt_pool_mode() const { return backend == Backend::libvirt && libvirt_storage == LibvirtStorage::pool; }
  NetworkSettings network;
  std::optional<KernelBoot> kernel;
  std::vector<std::string> qemu_args;
  Accel accel = Accel::automatic;
  bool vnc = false;
  /// "qemuUser": who qemu runs as once its files are open (runtime/qemu_confinement.h):
  /// kQemuUserDynamic, "root", or a user's name.
  std::string qemu_user = kQemuUserDynamic;
  BaseChange base_change = BaseChange::keep;
  Ready ready = Ready::specialized;
  std::int64_t shutdown_timeout_seconds = 60;
  bool restart_on_change = false;
  bool autostart = true;

  std::uint64_t memory_mib() const { return memory_bytes >> 20; }
  /// What is in the state directory, and where (state_dir.h).
  StateDir state() const { return StateDir{state_dir}; }
  std::filesystem::path overlay_path() const { return state().overlay(); }
  std::filesystem::path status_socket() const { return state().status_socket(); }
  std::filesystem::path qmp_socket() const { return state().qmp_socket(); }
  std::filesystem::path console_log() const { return state().console_log(); }
  std::filesystem::path console_socket() const { return state().console_socket(); }
  std::filesystem::path status_file() const { return state().status(); }
  std::filesystem::path events_file() const { return state().events(); }
  std::filesystem::path exported_image(std::string_view role) const { return state().image_link(role); }
};

/// Every problem parse_spec found in one spec: each part of it (name, base, sources,
/// memory, network, ...) is checked even when an earlier one failed, and the first
/// problem of each part is said (within a part a later key can depend on an earlier
/// one). what() says them all, one per line.
struct SpecProblems : InputError {
  std::vector<std::string> problems;
  explicit SpecProblems(std::vector<std::string> p);
};

/// Parses and validates spec JSON text. `source` names it in errors; relative paths
/// are resolved against `base_dir`.
Spec parse_spec(std::string_view text, const std::string& source, const std::filesystem::path& base_dir);

/// Reads and validates a spec file (at most 1 MiB).
Spec load_spec(const std::filesystem::path& file);

/// A locally administered, stable MAC address derived from the VM name.
std::string mac_for_name(std::string_view name);

}  // namespace sprout
