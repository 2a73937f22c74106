#include "disk/overlay_origin.h"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "atomic_file.h"
#include "strict_json.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr int kOriginVersion = 1;

std::optional<OverlayOrigin> from_json(const json& j) {
  if (!j.is_object()) return std::nullopt;
  const auto version = j.find("version");
  if (version == j.end() || !version->is_number_integer() || *version != kOriginVersion) return std::nullopt;
  const auto inode = j.find("overlayInode");
  const auto backings = j.find("backingFiles");
  const auto image = j.find("baseImage");
  const auto system = j.find("baseSystem");
  if (inode == j.end() || !inode->is_number_unsigned() || backings == j.end() || !backings->is_array() ||
      image == j.end() || !image->is_string() || system == j.end() || !(system->is_string() || system->is_null()))
    return std::nullopt;
  OverlayOrigin o;
  o.overlay_inode = inode->get<std::uint64_t>();
  for (const auto& b : *backings) {
    if (!b.is_string()) return std::nullopt;
    o.backing_files.emplace_back(b.get<std::string>());
  }
  o.base_image = image->get<std::string>();
  if (system->is_string()) o.base_system = system->get<std::string>();
  return o;
}

}  // namespace

void write_overlay_origin(const StateDir& state, const OverlayOrigin& origin) {
  json backings = json::array();
  for (const auto& b : origin.backing_files) backings.push_back(b.string());
  json j{{"version", kOriginVersion},
         {"overlayInode", origin.overlay_inode},
         {"backingFiles", backings},
         {"baseImage", origin.base_image.string()},
         {"baseSystem", origin.base_system.empty() ? json(nullptr) : json(origin.base_system)}};
  write_file_atomic(state.overlay_origin(), j.dump(2) + "\n", StateDir::kFileMode);
}

std::optional<OverlayOrigin> read_overlay_origin(const StateDir& state, std::string& why) {
  const fs::path file = state.overlay_origin();
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::error_code ec;
    why = fs::exists(fs::symlink_status(file, ec))
              ? fmt::format("{} cannot be read", file.string())
              : fmt::format("nothing records which base it was made from (no {}: made by an older sprout?)",
                            file.filename().string());
    return std::nullopt;
  }
  std::stringstream text;
  text << in.rdbuf();
  std::optional<OverlayOrigin> o;
  try {
    o = from_json(parse_json_loosely(text.str(), file.string()));
  } catch (const InputError&) {
  }
  if (!o) why = fmt::format("{} is not a record sprout wrote", file.string());
  return o;
}

ClosureBase closure_base_for(const Spec& spec, const fs::path& want, const std::optional<OverlayNow>& overlay,
                             const std::optional<OverlayOrigin>& origin, const std::string& why_no_origin,
                             const std::function<bool(const std::string&)>& in_store) {
  // A new overlay on the spec's base, or no baseSystem at all: the spec says it.
  if (!overlay || spec.base_system.empty()) return {spec.base_system, ""};
  auto whole = [&](const std::string& why) {
    return ClosureBase{"", fmt::format("{}: {}; its closure disk holds the whole closure of {}",
                                       spec.overlay_path().string(), why, spec.system)};
  };
  if (!origin) return whole(why_no_origin);
  if (origin->overlay_inode != overlay->inode)
    return whole(fmt::format("{} is about another file (the overlay was replaced, or a prepare was stopped "
                             "before the new one took its name)",
                             spec.state().overlay_origin().filename().string()));
  const auto& b = origin->backing_files;
  if (std::find(b.begin(), b.end(), overlay->backing) == b.end())
    return whole(fmt::format("its backing file {} was set outside sprout, so what the guest sees is not known",
                             overlay->backing.string()));
  // Made on the spec's own base: the spec's baseSystem describes it.
  if (origin->base_image == want) return {spec.base_system, ""};
  if (origin->base_system.empty())
    return whole(fmt::format("it was made on {} with no baseSystem recorded", origin->base_image.string()));
  if (!in_store(origin->base_system))
    return whole(fmt::format("it was made on {}, whose baseSystem {} is no longer in this host's store",
                             origin->base_image.string(), origin->base_system));
  return {origin->base_system,
          fmt::format("{}: its guest has the store of {}, the base it was made on: the closure disk leaves out "
                      "{}'s closure, not the spec's baseSystem {}",
                      spec.overlay_path().string(), origin->base_image.string(), origin->base_system,
                      spec.base_system)};
}

std::string closure_base_system(const Spec& spec, const fs::path& want, const std::optional<OverlayNow>& overlay) {
  std::optional<OverlayOrigin> origin;
  std::string why;
  if (overlay && !spec.base_system.empty()) origin = read_overlay_origin(spec.state(), why);
  auto in_store = [](const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
  };
  ClosureBase c = closure_base_for(spec, want, overlay, origin, why, in_store);
  if (!c.note.empty()) {
    if (c.base_system.empty())
      spdlog::warn("{}", c.note);
    else
      spdlog::info("{}", c.note);
  }
  return c.base_system;
}

}  // namespace sprout
