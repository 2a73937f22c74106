// Text a guest chose, made safe for a terminal and a log: C0 and C1 control
// characters, DEL and the bidirectional overrides/isolates (which reorder what a
// terminal shows) are written as visible escapes (\x1b, \u009b, \u202e), so a guest
// can neither move the cursor, recolour the screen nor paint a fake line. Invalid
// UTF-8 bytes become \xNN. Everything else passes unchanged. JSON output needs no
// such care (the JSON encoder escapes); everything printed as plain text does. And
// the columns text takes, to fit a table to a terminal.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sprout {

std::string for_terminal(std::string_view text);

/// The columns `text` (UTF-8) takes on a terminal, counted as code points (a wide
/// character counts as one: close enough for the names and messages of a table).
std::size_t utf8_columns(std::string_view text);

/// `text` cut to at most `width` columns, its end replaced by "…" when it was cut.
std::string ellipsize(std::string_view text, std::size_t width);

}  // namespace sprout
