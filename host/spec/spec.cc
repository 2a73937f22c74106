#include "spec/spec.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "error.h"
#include "base/sha256.h"
#include "spec/size_units.h"
#include "store_path.h"
#include "strict_json.h"
#include "vm_name.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::size_t kMaxSpecBytes = 1 << 20;

// Each closed set's JSON names, in the order of its enum.
template <class E>
using NameTable = std::initializer_list<std::pair<E, std::string_view>>;
const NameTable<Accel> kAccelNames = {{Accel::automatic, "auto"}, {Accel::kvm, "kvm"}, {Accel::tcg, "tcg"}};
const NameTable<NetworkMode> kNetworkModeNames = {
    {NetworkMode::user, "user"}, {NetworkMode::bridge, "bridge"}, {NetworkMode::libvirt, "libvirt"},
    {NetworkMode::none, "none"}};
const NameTable<Backend> kBackendNames = {{Backend::qemu, "qemu"}, {Backend::libvirt, "libvirt"}};
const NameTable<Specialize> kSpecializeNames = {{Specialize::guest, "guest"}, {Specialize::host, "host"}};
const NameTable<BaseChange> kBaseChangeNames = {
    {BaseChange::keep, "keep"}, {BaseChange::rebase, "rebase"}, {BaseChange::recreate, "recreate"}};
const NameTable<Ready> kReadyNames = {{Ready::specialized, "specialized"}, {Ready::started, "started"}};

template <class E>
const char* name_in(NameTable<E> table, E value) {
  for (const auto& [e, name] : table)
    if (e == value) return name.data();
  return "?";
}

/// The key's value as one of the table's names (InputError listing them otherwise).
template <class E>
E choose(StrictObject& o, std::string_view key, NameTable<E> table, E fallback) {
  std::vector<std::string_view> names;
  for (const auto& entry : table) names.push_back(entry.second);
  const std::string chosen = o.choice_or(key, names, name_in(table, fallback));
  for (const auto& [e, name] : table)
    if (name == chosen) return e;
  return fallback;
}

fs::path resolve(const fs::path& base_dir, const std::string& p) {
  fs::path path(p);
  return path.is_absolute() || base_dir.empty() ? path : (base_dir / path).lexically_normal();
}

std::string require_path(StrictObject& o, std::string_view key) {
  auto s = o.string(key);
  if (s.empty()) o.fail(key, "a non-empty path");
  if (s.find('\0') != std::string::npos) o.fail(key, "a path without NUL bytes");
  return s;
}

std::uint64_t read_memory(StrictObject& top) {
  const json* v = top.get("memory");
  if (!v) return 1024ull << 20;
  std::uint64_t bytes = 0;
  if (v->is_number_integer()) {
    auto mib = top.integer("memory", 64, 16 << 20);
    bytes = static_cast<std::uint64_t>(mib) << 20;
  } else if (v->is_object()) {
    StrictObject m(*v, top.source(), top.path_of("memory"));
    auto amount = m.integer("amount", 1, INT64_MAX);
    auto unit_name = m.string_or("unit", "MiB");
    auto unit = memory_unit_bytes(unit_name);
    if (!unit)
      m.fail("unit", "one of \"b\", \"bytes\", \"KB\", \"k\", \"KiB\", \"MB\", \"M\", \"MiB\", \"GB\", \"G\", "
                     "\"GiB\", \"TB\", \"T\", \"TiB\"");
    auto total = checked_multiply(static_cast<std::uint64_t>(amount), *unit);
    if (!total) m.fail_value("amount", "is too large");
    m.finish();
    bytes = *total;
  } else {
    top.fail("memory", "a number of MiB or an object {\"amount\": N, \"unit\": \"GiB\"}");
  }
  if (bytes < (64ull << 20)) top.fail_value("memory", "must be at least 64 MiB");
  if (bytes > (16ull << 40)) top.fail_value("memory", "must be at most 16 TiB");
  return bytes;
}

std::optional<std::uint64_t> read_disk_size(StrictObject& top) {
  auto o = top.optional_object("diskSize");
  if (!o) return std::nullopt;
  auto amount = o->integer("amount", 1, INT64_MAX);
  auto unit_name = o->string_or("unit", "G");
  auto unit = disk_unit_bytes(unit_name);
  if (!unit) o->fail("unit", "one of \"K\", \"M\", \"G\", \"T\"");
  auto total = checked_multiply(static_cast<std::uint64_t>(amount), *unit);
  if (!total) o->fail_value("amount", "is too large");
  o->finish();
  return total;
}

bool valid_mac(const std::string& mac) {
  if (mac.size() != 17) return false;
  for (std::size_t i = 0; i < mac.size(); ++i) {
    if (i % 3 == 2) {
      if (mac[i] != ':') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(mac[i]))) {
      return false;
    }
  }
  return true;
}

/// "base" (the image and its format) and the directories: stateDir, cacheDir, gcRootDir.
void read_base(StrictObject& top, const fs::path& base_dir, Spec& s) {
  auto base = top.object("base");
  s.base_image = resolve(base_dir, require_path(base, "image"));
  s.base_format = base.choice_or("format", {"qcow2", "raw"}, "qcow2");
  base.finish();
  s.state_dir = resolve(base_dir, require_path(top, "stateDir"));
  if (top.has("cacheDir")) s.cache_dir = resolve(base_dir, require_path(top, "cacheDir"));
  if (top.has("gcRootDir")) s.gc_root_dir = resolve(base_dir, require_path(top, "gcRootDir"));
}

/// "sources": the trees exported to the guest.
void read_sources(StrictObject& top, const fs::path& base_dir, Spec& s) {
  auto src = top.object("sources");
  s.config_source = resolve(base_dir, require_path(src, "config"));
  s.self_source = resolve(base_dir, require_path(src, "self"));
  if (src.has("ssh")) s.ssh_source = resolve(base_dir, require_path(src, "ssh"));
  if (src.has("secrets")) {
    s.secrets_source = resolve(base_dir, require_path(src, "secrets"));
    if (s.secrets_source->lexically_normal().string().rfind("/nix/store/", 0) == 0)
      src.fail_value("secrets", "is in the Nix store, which every user of this host can read: keep secrets in a "
                                "directory only root reads (say /var/lib/sprout/secrets/NAME)");
  }
  s.allow_private_keys = src.boolean_or("allowPrivateKeys", false);
  src.finish();
}

/// "rebuild", its defaults when absent.
RebuildSettings read_rebuild(StrictObject& top) {
  RebuildSettings rebuild;
  auto r = top.optional_object("rebuild");
  if (!r) {
    rebuild.target = default_rebuild_target(rebuild.mode);
    return rebuild;
  }
  rebuild.mode = r->choice_or("mode", {"classic", "flake"}, "classic");
  rebuild.target = r->string_or("target", default_rebuild_target(rebuild.mode));
  if (rebuild.target.empty()) r->fail("target", "a non-empty string");
  rebuild.extra_args = r->strings_or_empty("extraArgs", 256);
  rebuild.timeout_seconds = r->integer_or("timeoutSeconds", 3600, 1, 7 * 24 * 3600);
  rebuild.max_attempts = r->integer_or("maxAttempts", 3, 1, 100);
  rebuild.respecialize_on_change = r->boolean_or("respecializeOnChange", true);
  r->finish();
  return rebuild;
}

/// "specialize", and the host-built system's store paths ("system", "baseSystem").
void read_system(StrictObject& top, Spec& s) {
  s.specialize = choose(top, "specialize", kSpecializeNames, Specialize::guest);
  for (auto [key, field] : {std::pair{"system", &s.system}, std::pair{"baseSystem", &s.base_system}}) {
    if (!top.has(key)) continue;
    if (!s.host_built())
      top.fail_value(key, "is only used with \"specialize\": \"host\" (the guest builds its own system)");
    auto path = top.optional_string(key);
    if (!path) continue;  // null: none
    if (auto p = store_path_problem(*path); !p.empty())
      top.fail_value(key, fmt::format("{} {} (the toplevel of a NixOS system: config.system.build.toplevel)", *path, p));
    *field = *path;
  }
  if (s.host_built() && s.system.empty())
    top.fail_value("system", "\"specialize\": \"host\" needs the VM's system: the store path of its toplevel "
                             "(config.system.build.toplevel)");
}

/// "backend" and "libvirt".
void read_backend(StrictObject& top, Spec& s) {
  s.backend = choose(top, "backend", kBackendNames, Backend::qemu);
  if (auto l = top.optional_object("libvirt")) {
    s.libvirt_uri = l->string_or("uri", "qemu:///system");
    if (s.libvirt_uri.empty()) l->fail("uri", "a libvirt URI such as \"qemu:///system\"");
    const LibvirtStorage by_uri = default_libvirt_storage(s.libvirt_uri);
    s.libvirt_storage = l->choice_or("storage", {"files", "pool"}, by_uri == LibvirtStorage::pool ? "pool" : "files") ==
                                "pool"
                            ? LibvirtStorage::pool
                            : LibvirtStorage::files;
    s.libvirt_pool = l->string_or("pool", kDefaultLibvirtPool);
    // A pool's name becomes part of file names on the daemon's host and of messages.
    const auto& p = s.libvirt_pool;
    if (p.empty() || p.size() > 64 || p[0] == '.' || p[0] == '-' ||
        !std::all_of(p.begin(), p.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'; }))
      l->fail("pool", "a libvirt storage pool name: 1-64 bytes of A-Z a-z 0-9 . _ -, not starting with . or -");
    s.libvirt_pool_path = l->string_or("poolPath", kDefaultLibvirtPoolPath);
    if (!s.libvirt_pool_path.is_absolute() || s.libvirt_pool_path.lexically_normal() == "/")
      l->fail("poolPath", "an absolute directory on the daemon's host (not /), such as \"/var/lib/sprout/pool\"");
    l->finish();
  }
}

/// "qemuUser": who qemu runs as once it has opened its files ("dynamic", "root" or a
/// user name). Whether a named user exists is asked at run time, on the host that runs
/// the VM; the name's form is checked here.
void read_qemu_user(StrictObject& top, Spec& s) {
  s.qemu_user = top.string_or("qemuUser", kQemuUserDynamic);
  const std::string& u = s.qemu_user;
  const bool name_like = !u.empty() && u.size() <= 32 && (std::islower(static_cast<unsigned char>(u[0])) || u[0] == '_') &&
                         std::all_of(u.begin(), u.end(), [](char c) {
                           return std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) ||
                                  c == '_' || c == '-';
                         });
  if (!name_like)
    top.fail_value("qemuUser", "\"dynamic\" (a uid of its own per VM), \"root\", or the name of a user on the host "
                               "(lower-case letters, digits, '_' and '-', at most 32)");
  if (s.backend == Backend::libvirt && u != kQemuUserDynamic)
    top.fail_value("qemuUser", "libvirt runs qemu as the user its qemu.conf names (`user = ...`); leave "
                               "\"qemuUser\" out for a libvirt VM");
}

/// One of network.forwards (`i`: its index), refused when an earlier one of `taken`
/// forwards the same host port.
PortForward read_forward(const json& value, const std::string& source, StrictObject& n, std::size_t i,
                         const std::vector<PortForward>& taken) {
  StrictObject f(value, source, fmt::format("{}[{}]", n.path_of("forwards"), i));
  PortForward pf;
  pf.protocol = f.choice_or("protocol", {"tcp", "udp"}, "tcp");
  // Loopback unless the spec says otherwise: a forwarded ssh port is not for the
  // whole network by default ("0.0.0.0" opens it on every interface).
  pf.host_address = f.string_or("hostAddress", "127.0.0.1");
  pf.host_port = static_cast<int>(f.integer("hostPort", 1, 65535));
  pf.guest_port = static_cast<int>(f.integer("guestPort", 1, 65535));
  f.finish();
  // QEMU refuses two forwards of one host port (for all addresses, "" or "0.0.0.0",
  // or the same).
  auto all = [](const std::string& a) { return a.empty() || a == "0.0.0.0"; };
  for (std::size_t k = 0; k < taken.size(); ++k) {
    const auto& o = taken[k];
    if (o.protocol == pf.protocol && o.host_port == pf.host_port &&
        (o.host_address == pf.host_address || all(o.host_address) || all(pf.host_address)))
      f.fail_value("hostPort", fmt::format("{} port {} is already forwarded by {}[{}]; each host port can be "
                                           "forwarded once",
                                           pf.protocol, pf.host_port, n.path_of("forwards"), k));
  }
  return pf;
}

/// The "network" object (its MAC left empty when it names none).
NetworkSettings read_network(StrictObject& n, const std::string& source) {
  NetworkSettings network;
  network.mode = choose(n, "mode", kNetworkModeNames, NetworkMode::user);
  const auto& fwds = n.array_or_empty("forwards", 256);
  for (std::size_t i = 0; i < fwds.size(); ++i)
    network.forwards.push_back(read_forward(fwds[i], source, n, i, network.forwards));
  network.bridge = n.string_or("bridge", "br0");
  network.libvirt_network = n.string_or("libvirtNetwork", "default");
  if (auto mac = n.optional_string("mac")) {
    if (!valid_mac(*mac)) n.fail("mac", "a MAC address like \"52:54:00:12:34:56\"");
    network.mac = *mac;
  }
  if (!network.forwards.empty() && network.mode != NetworkMode::user && network.mode != NetworkMode::libvirt)
    n.fail_value("forwards", fmt::format("port forwards need network.mode \"user\" (it is \"{}\")",
                                         name_of(network.mode)));
  n.finish();
  return network;
}

/// "kernel": a direct kernel boot, if the spec asks for one.
std::optional<KernelBoot> read_kernel(StrictObject& top, const fs::path& base_dir) {
  auto k = top.optional_object("kernel");
  if (!k) return std::nullopt;
  KernelBoot kb;
  kb.kernel = resolve(base_dir, require_path(*k, "path"));
  if (k->has("initrd")) kb.initrd = resolve(base_dir, require_path(*k, "initrd"));
  kb.cmdline = k->string_or("cmdline", "");
  k->finish();
  return kb;
}

}  // namespace

std::string mac_for_name(std::string_view name) {
  auto h = sha256_hex(fmt::format("sprout-mac:{}", name));
  // 52:54:00 is QEMU's prefix; it is locally administered and what libvirt uses too.
  return fmt::format("52:54:00:{}:{}:{}", h.substr(0, 2), h.substr(2, 2), h.substr(4, 2));
}

SpecProblems::SpecProblems(std::vector<std::string> p)
    : InputError(fmt::format("{}", fmt::join(p, "\n"))), problems(std::move(p)) {}

Spec parse_spec(std::string_view text, const std::string& source, const fs::path& base_dir) {
  json doc = parse_json_text(text, source);
  StrictObject top(doc, source);
  Spec s;
  // Each part checked whatever became of the others: one run shows every mistake.
  std::vector<std::string> problems;
  auto part = [&](auto&& read) {
    try {
      read();
    } catch (const InputError& e) {
      problems.emplace_back(e.what());
    }
  };
  part([&] {
    auto version = top.integer("version", 0, INT32_MAX);
    if (version != kSpecVersion)
      top.fail_value("version", fmt::format("this sprout reads spec version {}, the file has {}", kSpecVersion,
                                            version));
  });
  part([&] {
    s.name = top.string("name");
    if (auto problem = vm_name_problem(s.name); !problem.empty()) top.fail_value("name", problem);
  });
  part([&] { read_base(top, base_dir, s); });
  part([&] { read_sources(top, base_dir, s); });
  part([&] { s.memory_bytes = read_memory(top); });
  part([&] { s.vcpus = static_cast<int>(top.integer_or("vcpus", 1, 1, 256)); });
  part([&] { s.disk_size_bytes = read_disk_size(top); });
  part([&] { s.rebuild = read_rebuild(top); });
  part([&] { read_system(top, s); });
  part([&] { read_backend(top, s); });
  part([&] {
    if (auto n = top.optional_object("network")) s.network = read_network(*n, source);
  });
  if (s.network.mac.empty()) s.network.mac = mac_for_name(s.name);
  part([&] { s.kernel = read_kernel(top, base_dir); });
  part([&] {
    s.qemu_args = top.strings_or_empty("qemuArgs", 1024);
    // Later options win in qemu: these would silently undo qemuUser and the sandbox.
    for (const char* undoing : {"-runas", "-run-with", "-sandbox", "-chroot"})
      if (std::find(s.qemu_args.begin(), s.qemu_args.end(), undoing) != s.qemu_args.end())
        top.fail_value("qemuArgs", fmt::format("\"{}\" would undo the confinement sprout gives qemu; use "
                                               "\"qemuUser\" for the user qemu runs as",
                                               undoing));
  });
  part([&] { s.accel = choose(top, "accel", kAccelNames, Accel::automatic); });
  part([&] { s.vnc = top.boolean_or("vnc", false); });
  part([&] { read_qemu_user(top, s); });
  part([&] { s.base_change = choose(top, "baseChange", kBaseChangeNames, BaseChange::keep); });
  part([&] { s.ready = choose(top, "ready", kReadyNames, Ready::specialized); });
  part([&] { s.shutdown_timeout_seconds = top.integer_or("shutdownTimeoutSeconds", 60, 1, 24 * 3600); });
  part([&] { s.restart_on_change = top.boolean_or("restartOnChange", false); });
  part([&] { s.autostart = top.boolean_or("autostart", true); });
  part([&] { top.finish(); });
  if (!problems.empty()) throw SpecProblems(std::move(problems));
  return s;
}

const char* name_of(Accel a) { return name_in(kAccelNames, a); }
const char* name_of(NetworkMode m) { return name_in(kNetworkModeNames, m); }
const char* name_of(Backend b) { return name_in(kBackendNames, b); }
const char* name_of(Specialize v) { return name_in(kSpecializeNames, v); }
const char* name_of(BaseChange c) { return name_in(kBaseChangeNames, c); }
const char* name_of(Ready r) { return name_in(kReadyNames, r); }

Spec load_spec(const fs::path& file) {
  std::error_code ec;
  auto status = fs::status(file, ec);
  if (ec || !fs::exists(status))
    throw InputError(fmt::format("{}: spec file not found (give the path of a VM's JSON spec)", file.string()));
  if (!fs::is_regular_file(status)) throw InputError(fmt::format("{}: not a regular file", file.string()));
  if (fs::file_size(file) > kMaxSpecBytes)
    throw InputError(fmt::format("{}: spec file is larger than 1 MiB", file.string()));
  std::ifstream in(file, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot read the spec file", file.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  auto abs = fs::absolute(file);
  Spec s = parse_spec(ss.str(), file.string(), abs.parent_path());
  s.file = abs;
  return s;
}

}  // namespace sprout
