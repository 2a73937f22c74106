#include "cli/time_span.h"

#include <cctype>
#include <charconv>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "error.h"

namespace sprout {

namespace {

constexpr std::pair<std::string_view, double> kUnits[] = {
    {"ms", 1e-3},   {"msec", 1e-3},  {"s", 1},         {"sec", 1},       {"second", 1},   {"seconds", 1},
    {"m", 60},      {"min", 60},     {"minute", 60},   {"minutes", 60},  {"h", 3600},     {"hr", 3600},
    {"hour", 3600}, {"hours", 3600}, {"d", 86400},     {"day", 86400},   {"days", 86400}, {"w", 604800},
    {"week", 604800}, {"weeks", 604800}};

bool unit_seconds(std::string_view unit, double& out) {
  for (const auto& [name, seconds] : kUnits)
    if (name == unit) {
      out = seconds;
      return true;
    }
  return false;
}

}  // namespace

double parse_time_span(std::string_view text, std::string_view option, double max_seconds) {
  auto refuse = [&](std::string_view why) -> InputError {
    return InputError(fmt::format("--{} {}: {}; give seconds (90) or a span with units as systemd writes them "
                                  "(90s, 5min, 1h 30min, 2d)",
                                  option, text, why));
  };
  std::size_t i = 0;
  auto skip_spaces = [&] {
    while (i < text.size() && text[i] == ' ') ++i;
  };
  double total = 0;
  int parts = 0;
  bool bare = false;
  skip_spaces();
  while (i < text.size()) {
    if (bare) throw refuse("a number without a unit can only stand alone");
    double value = 0;
    auto [end, ec] = std::from_chars(text.data() + i, text.data() + text.size(), value);
    if (ec != std::errc() || end == text.data() + i || value < 0) throw refuse("not a duration");
    i = static_cast<std::size_t>(end - text.data());
    skip_spaces();  // "3 hours" as "3hours"
    std::size_t unit_at = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string_view unit = text.substr(unit_at, i - unit_at);
    double scale = 1;
    if (unit.empty())
      bare = true;
    else if (!unit_seconds(unit, scale))
      throw refuse(fmt::format("unknown unit '{}'", unit));
    total += value * scale;
    ++parts;
    skip_spaces();
  }
  if (parts == 0) throw refuse("empty");
  if (bare && parts > 1) throw refuse("a number without a unit can only stand alone");
  if (!(total <= max_seconds)) throw refuse(fmt::format("longer than {} seconds", max_seconds));
  return total;
}

}  // namespace sprout
