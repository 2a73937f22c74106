#include "libvirt/volume_names.h"

#include <regex>

#include <fmt/format.h>

#include "vm_name.h"

namespace sprout {

namespace {
constexpr std::size_t kHex = 32;  // 128 bits of SHA-256, as the image cache names its files
constexpr std::string_view kMarker = "@complete";

std::string short_hex(std::string_view hex) { return std::string(hex.substr(0, kHex)); }
}  // namespace

std::string base_volume_name(std::string_view sha256_hex, std::string_view format) {
  return fmt::format("base-{}.{}", short_hex(sha256_hex), format);
}

std::optional<std::string> image_volume_name(std::string_view cache_file_name) {
  static const std::regex re("^(config|self|ssh|closure)-[0-9a-f]{32}\\.ext4$");
  const std::string s(cache_file_name);
  if (!std::regex_match(s, re)) return std::nullopt;
  return s;
}

std::string secrets_volume_name(std::string_view vm, std::string_view sha256_hex) {
  return fmt::format("{}@secrets-{}.img", vm, short_hex(sha256_hex));
}

std::string overlay_volume_name(std::string_view vm) { return fmt::format("{}@root.qcow2", vm); }

std::string marker_volume_name(std::string_view volume) { return fmt::format("{}{}", volume, kMarker); }

VolumeName parse_volume_name(std::string_view name) {
  VolumeName v;
  const std::string s(name);
  if (s.size() > kMarker.size() && s.compare(s.size() - kMarker.size(), kMarker.size(), kMarker) == 0) {
    const std::string target = s.substr(0, s.size() - kMarker.size());
    if (parse_volume_name(target).uploaded()) {
      v.kind = VolumeName::marker;
      v.target = target;
    }
    return v;
  }
  static const std::regex base("^base-[0-9a-f]{32}\\.(qcow2|raw)$");
  static const std::regex secrets("^(.+)@secrets-[0-9a-f]{32}\\.img$");
  static const std::regex overlay("^(.+)@root\\.qcow2$");
  std::smatch m;
  if (std::regex_match(s, base)) {
    v.kind = VolumeName::base;
  } else if (image_volume_name(s)) {
    v.kind = VolumeName::image;
  } else if (std::regex_match(s, m, secrets) && is_valid_vm_name(m[1].str())) {
    v.kind = VolumeName::secrets;
    v.vm = m[1].str();
  } else if (std::regex_match(s, m, overlay) && is_valid_vm_name(m[1].str())) {
    v.kind = VolumeName::overlay;
    v.vm = m[1].str();
  }
  return v;
}

}  // namespace sprout
