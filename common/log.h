// Logging setup shared by sprout and sprout-agent: spdlog to stderr. Under journald
// (JOURNAL_STREAM set) and on a terminal lines carry no timestamps ("sprout: error:
// ..."; journald stamps its own, a person at a terminal does not need them); other
// streams (a log file) get a time of day. Colour only on a terminal, never with
// NO_COLOR set, and never where `colour` is false (the agent writes to a console that
// is logged).
#pragma once

#include <string_view>

namespace sprout {

/// `level`: trace, debug, info, warn, error. Unknown levels fall back to info.
void setup_logging(std::string_view program, std::string_view level = "info", bool colour = true);

}  // namespace sprout
