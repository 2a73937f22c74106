#include "manifest.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "store_path.h"
#include "strict_json.h"
#include "vm_name.h"

namespace sprout {

using nlohmann::json;

namespace {

constexpr std::size_t kMaxString = 4096;

std::string bounded(StrictObject& o, std::string_view key, std::size_t max = kMaxString) {
  auto s = o.string(key);
  if (s.size() > max) o.fail_value(key, fmt::format("is longer than {} bytes", max));
  return s;
}

std::string digest_field(StrictObject& o, std::string_view key) {
  auto s = o.string(key);
  bool ok = s.size() == 64;
  for (char c : s) ok = ok && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
  if (!ok) o.fail(key, "a SHA-256 digest (64 lowercase hex digits)");
  return s;
}

}  // namespace

std::string Manifest::to_json_text() const {
  json disks{{"config", {{"digest", config_digest}}}, {"self", {{"digest", self_digest}}}};
  if (!ssh_digest.empty()) disks["ssh"] = {{"digest", ssh_digest}};
  if (host_built()) disks["closure"] = {{"digest", closure_digest}};
  if (!secrets_digest.empty()) disks["secrets"] = {{"digest", secrets_digest}};
  json doc{{"version", kManifestVersion},
           {"name", name},
           {"generation", generation},
           {"disks", disks},
           {"rebuild", rebuild.to_json()}};
  // Only for host-built VMs: a guest-built VM's manifest is what older agents read.
  if (host_built()) doc["system"] = system;
  return doc.dump(2) + "\n";
}

Manifest parse_manifest(std::string_view text, const std::string& source) {
  if (text.size() > kMaxManifestBytes)
    throw InputError(fmt::format("{}: manifest is larger than {} bytes", source, kMaxManifestBytes));
  json doc = parse_json_text(text, source);
  StrictObject top(doc, source);
  Manifest m;
  auto version = top.integer("version", 0, INT32_MAX);
  if (version != kManifestVersion)
    top.fail_value("version", fmt::format("this agent reads manifest version {}, the disk has {}; update the "
                                          "guest's sprout-agent or the host's sprout so they match",
                                          kManifestVersion, version));
  m.name = bounded(top, "name", kMaxVmNameBytes);
  if (auto p = vm_name_problem(m.name); !p.empty()) top.fail_value("name", p);
  m.generation = digest_field(top, "generation");
  {
    auto disks = top.object("disks");
    auto config = disks.object("config");
    m.config_digest = digest_field(config, "digest");
    config.finish();
    auto self = disks.object("self");
    m.self_digest = digest_field(self, "digest");
    self.finish();
    if (auto ssh = disks.optional_object("ssh")) {
      m.ssh_digest = digest_field(*ssh, "digest");
      ssh->finish();
    }
    if (auto closure = disks.optional_object("closure")) {
      m.closure_digest = digest_field(*closure, "digest");
      closure->finish();
    }
    if (auto secrets = disks.optional_object("secrets")) {
      m.secrets_digest = digest_field(*secrets, "digest");
      secrets->finish();
    }
    disks.finish();
  }
  {
    auto r = top.object("rebuild");
    m.rebuild.mode = r.choice_or("mode", {"classic", "flake"}, "classic");
    m.rebuild.target = bounded(r, "target");
    if (m.rebuild.target.empty()) r.fail("target", "a non-empty string");
    m.rebuild.extra_args = r.strings_or_empty("extraArgs", 256);
    for (const auto& a : m.rebuild.extra_args)
      if (a.size() > kMaxString) r.fail_value("extraArgs", "an argument is longer than 4096 bytes");
    m.rebuild.timeout_seconds = r.integer("timeoutSeconds", 1, 7 * 24 * 3600);
    m.rebuild.max_attempts = r.integer("maxAttempts", 1, 100);
    m.rebuild.respecialize_on_change = r.boolean_or("respecializeOnChange", true);
    r.finish();
  }
  if (auto system = top.optional_string("system")) {
    if (auto p = store_path_problem(*system); !p.empty()) top.fail_value("system", *system + " " + p);
    m.system = *system;
  }
  if (m.system.empty() != m.closure_digest.empty())
    top.fail_value("system", m.system.empty() ? "disks.closure is given without the system it holds"
                                              : "a host-built system needs disks.closure");
  top.finish();
  return m;
}

Manifest load_manifest(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) throw InputError(fmt::format("{}: no manifest (is this a disk made by `sprout export`?)", path));
    throw InputError(fmt::format("{}: cannot open manifest: {}", path, std::strerror(errno)));
  }
  std::string text;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxManifestBytes) break;
  }
  ::close(fd);
  return parse_manifest(text, path);
}

}  // namespace sprout
