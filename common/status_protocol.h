// The status protocol between guest agent and host: one JSON object per line, UTF-8,
// at most 4 KiB including the newline, over the virtio-serial port sprout.status.0.
// See docs/protocol.md. encode_status_line() always produces a valid line (it
// shortens the message and drops detail to fit); decode_status_line() never throws:
// anything malformed comes back as an error string.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace sprout {

inline constexpr int kStatusProtocolVersion = 1;
inline constexpr std::string_view kStatusPortName = "sprout.status.0";
inline constexpr std::size_t kMaxStatusLineBytes = 4096;
/// `detail` may nest objects and arrays this deep, no deeper (the agent uses 3).
inline constexpr std::size_t kMaxDetailDepth = 8;

enum class Phase { starting, mounting, rebuilding, log, rebuilt, rebooting, specialized, failed };

std::string_view phase_name(Phase p);
std::optional<Phase> phase_from_name(std::string_view name);
/// specialized and failed end a boot's story; everything else is on the way.
bool is_terminal(Phase p);

struct StatusEvent {
  std::string vm;
  std::string boot_id;
  std::uint64_t seq = 0;
  std::int64_t time_ms = 0;  ///< Unix time in milliseconds, guest clock
  Phase phase = Phase::starting;
  std::string message;
  std::string generation;  ///< may be empty before the manifest is read
  nlohmann::json detail;   ///< null or an object (timings, exit status, last lines)
};

/// One line, '\n'-terminated, at most kMaxStatusLineBytes.
std::string encode_status_line(const StatusEvent& e);

struct DecodedStatus {
  std::optional<StatusEvent> event;
  std::string error;  ///< why the line was rejected, when event is empty
};

/// Decodes one line (with or without its trailing '\n'). Never throws.
DecodedStatus decode_status_line(std::string_view line) noexcept;

nlohmann::json status_event_to_json(const StatusEvent& e);

/// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
bool is_valid_utf8(std::string_view s);

/// `s` cut to at most `max_bytes` without splitting a UTF-8 sequence.
std::string utf8_truncate(std::string_view s, std::size_t max_bytes);

}  // namespace sprout
