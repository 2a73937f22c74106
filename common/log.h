// Logging setup shared by sprout and sprout-agent: spdlog to stderr, without
// timestamps when journald is the reader (it adds its own).
#pragma once

#include <string_view>

namespace sprout {

/// `level`: trace, debug, info, warn, error. Unknown levels fall back to info.
void setup_logging(std::string_view program, std::string_view level = "info");

}  // namespace sprout
