#include "status_protocol.h"

#include "strict_json.h"

#include <algorithm>
#include <array>
#include <vector>

#include <fmt/format.h>

#include "vm_name.h"

namespace sprout {

using nlohmann::json;

namespace {
constexpr std::array<std::string_view, 8> kPhaseNames{"starting", "mounting", "rebuilding", "log",
                                                      "rebuilt",  "rebooting", "specialized", "failed"};
constexpr std::size_t kMaxIdBytes = 128;
}  // namespace

std::string_view phase_name(Phase p) { return kPhaseNames[static_cast<std::size_t>(p)]; }

std::optional<Phase> phase_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kPhaseNames.size(); ++i)
    if (kPhaseNames[i] == name) return static_cast<Phase>(i);
  return std::nullopt;
}

bool is_terminal(Phase p) { return p == Phase::specialized || p == Phase::failed; }

bool is_valid_utf8(std::string_view s) {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t i = 0;
  while (i < s.size()) {
    unsigned char c = b[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t extra;
    std::uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      extra = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= extra) return false;
    for (std::size_t k = 1; k <= extra; ++k) {
      if ((b[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b[i + k] & 0x3F);
    }
    static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

std::string utf8_truncate(std::string_view s, std::size_t max_bytes) {
  if (s.size() <= max_bytes) return std::string(s);
  std::size_t end = max_bytes;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  return std::string(s.substr(0, end));
}

json status_event_to_json(const StatusEvent& e) {
  json j{{"version", kStatusProtocolVersion},
         {"vm", e.vm},
         {"bootId", e.boot_id},
         {"seq", e.seq},
         {"timeMs", e.time_ms},
         {"phase", phase_name(e.phase)},
         {"message", e.message},
         {"generation", e.generation}};
  if (e.detail.is_object()) j["detail"] = e.detail;
  return j;
}

std::string encode_status_line(const StatusEvent& e) {
  StatusEvent copy = e;
  // Invalid UTF-8 from a rebuild's output must not make the line undecodable.
  auto dump = [](const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n"; };
  std::string line = dump(status_event_to_json(copy));
  if (line.size() <= kMaxStatusLineBytes) return line;
  if (copy.detail.is_object()) {
    copy.detail = json{{"truncated", true}};
    line = dump(status_event_to_json(copy));
    if (line.size() <= kMaxStatusLineBytes) return line;
  }
  // Shorten the message until it fits (escaping can make it grow, so loop).
  std::size_t keep = copy.message.size();
  while (line.size() > kMaxStatusLineBytes && keep > 0) {
    std::size_t over = line.size() - kMaxStatusLineBytes;
    keep = keep > over + 16 ? keep - over - 16 : 0;
    copy.message = utf8_truncate(e.message, keep) + "…";
    line = dump(status_event_to_json(copy));
  }
  return line;
}

namespace {

/// Depth of nested arrays and objects (a scalar is 0), iteratively: a hostile line
/// may nest as deep as its length allows.
std::size_t nesting_depth(const json& root) {
  std::size_t deepest = 0;
  std::vector<std::pair<const json*, std::size_t>> todo{{&root, 0}};
  while (!todo.empty()) {
    auto [v, depth] = todo.back();
    todo.pop_back();
    if (!v->is_structured()) continue;
    deepest = std::max(deepest, depth + 1);
    for (const auto& child : *v) todo.emplace_back(&child, depth + 1);
  }
  return deepest;
}

}  // namespace

DecodedStatus decode_status_line(std::string_view line) noexcept {
  DecodedStatus out;
  try {
    if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() + 1 > kMaxStatusLineBytes) {
      out.error = "line longer than 4096 bytes";
      return out;
    }
    if (line.empty()) {
      out.error = "empty line";
      return out;
    }
    if (!is_valid_utf8(line)) {
      out.error = "line is not valid UTF-8";
      return out;
    }
    // The same strict reading as every other sprout document (strict_json.h): a
    // repeated key, an unknown field, a wrong type or an out-of-range value is the
    // line's error, naming the field.
    json j = parse_json_text(line, "status line");
    StrictObject top(j, "status line");
    auto bounded = [&](const char* key, std::size_t max) {
      std::string v = top.string(key);
      if (v.size() > max) top.fail_value(key, fmt::format("is longer than {} bytes", max));
      return v;
    };
    auto version = top.integer("version", 0, INT32_MAX);
    if (version != kStatusProtocolVersion)
      top.fail_value("version", fmt::format("unsupported protocol version {}", version));
    StatusEvent e;
    e.vm = bounded("vm", kMaxVmNameBytes);
    if (!is_valid_vm_name(e.vm)) top.fail_value("vm", "is not a valid VM name");
    e.boot_id = bounded("bootId", kMaxIdBytes);
    e.message = bounded("message", kMaxStatusLineBytes);
    e.generation = bounded("generation", kMaxIdBytes);
    e.seq = top.unsigned_integer("seq");
    e.time_ms = top.integer("timeMs", INT64_MIN, INT64_MAX);
    auto p = phase_from_name(bounded("phase", 32));
    if (!p) top.fail_value("phase", "is not a phase of protocol version 1");
    e.phase = *p;
    if (const json* d = top.get("detail")) {
      if (!d->is_object()) top.fail("detail", "an object");
      if (nesting_depth(*d) > kMaxDetailDepth)
        top.fail_value("detail", fmt::format("is nested deeper than {} levels", kMaxDetailDepth));
      e.detail = *d;
    }
    top.finish();
    out.event = std::move(e);
  } catch (const InputError& ex) {
    out.event.reset();
    std::string m = ex.what();
    constexpr std::string_view kSource = "status line: ";
    out.error = m.rfind(kSource, 0) == 0 ? m.substr(kSource.size()) : m;
  } catch (const std::exception& ex) {
    out.event.reset();
    out.error = std::string("cannot decode line: ") + ex.what();
  } catch (...) {
    out.event.reset();
    out.error = "cannot decode line";
  }
  return out;
}

}  // namespace sprout
