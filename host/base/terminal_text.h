// Text a guest chose, made safe for a terminal and a log: C0 and C1 control
// characters, DEL and the bidirectional overrides/isolates (which reorder what a
// terminal shows) are written as visible escapes (\x1b, \u009b, \u202e), so a guest
// can neither move the cursor, recolour the screen nor paint a fake line. Invalid
// UTF-8 bytes become \xNN. Everything else passes unchanged. JSON output needs no
// such care (the JSON encoder escapes); everything printed as plain text does.
#pragma once

#include <string>
#include <string_view>

namespace sprout {

std::string for_terminal(std::string_view text);

}  // namespace sprout
