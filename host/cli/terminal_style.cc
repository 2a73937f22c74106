#include "cli/terminal_style.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdlib>

namespace sprout {

bool colour_allowed(std::FILE* stream) {
  const char* no = std::getenv("NO_COLOR");
  if (no && *no) return false;
  return ::isatty(::fileno(stream)) == 1;
}

std::string paint(std::string_view text, Tone tone, bool colour) {
  const char* code = nullptr;
  switch (tone) {
    case Tone::plain: break;
    case Tone::good: code = "32"; break;
    case Tone::bad: code = "31"; break;
    case Tone::busy: code = "33"; break;
    case Tone::dim: code = "2"; break;
  }
  if (!colour || !code || text.empty()) return std::string(text);
  return std::string("\033[") + code + "m" + std::string(text) + "\033[0m";
}

Tone phase_tone(std::string_view phase) {
  if (phase == "specialized") return Tone::good;
  if (phase == "failed") return Tone::bad;
  if (phase.empty() || phase == "-") return Tone::dim;
  return Tone::busy;
}

int terminal_columns(std::FILE* stream, int fallback) {
  winsize w{};
  if (::ioctl(::fileno(stream), TIOCGWINSZ, &w) == 0 && w.ws_col > 0) return w.ws_col;
  return fallback;
}

}  // namespace sprout
