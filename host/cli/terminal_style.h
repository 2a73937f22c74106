// How sprout's own output looks on a terminal: colour only when the stream is a
// terminal and NO_COLOR (https://no-color.org) is not set; the width to fit a live
// line into. Text from a guest is escaped (terminal_text.h) before it gets here.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace sprout {

enum class Tone { plain, good, bad, busy, dim };

/// Whether output to `stream` may be coloured.
bool colour_allowed(std::FILE* stream);

/// `text` in `tone`'s colour when `colour`, else unchanged.
std::string paint(std::string_view text, Tone tone, bool colour);

/// The tone of a phase word (specialized good, failed bad, the others busy).
Tone phase_tone(std::string_view phase);

/// Columns of the terminal on `stream`; `fallback` when it is none.
int terminal_columns(std::FILE* stream, int fallback = 80);

}  // namespace sprout
