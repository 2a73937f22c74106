#include "line_splitter.h"

#include <algorithm>

namespace sprout {

void LineSplitter::emit(const LineFn& on_line, bool strip_cr) {
  std::string_view l(line_);
  if (strip_cr && !l.empty() && l.back() == '\r') l.remove_suffix(1);
  on_line(l);
  line_.clear();
}

void LineSplitter::feed(std::string_view bytes, const LineFn& on_line, const std::function<void()>& on_overlong) {
  while (!bytes.empty()) {
    const std::size_t nl = bytes.find('\n');
    const bool ends = nl != std::string_view::npos;
    std::string_view part = bytes.substr(0, nl);
    bytes.remove_prefix(ends ? nl + 1 : bytes.size());
    if (skipping_) {
      skipping_ = !ends;
      continue;
    }
    if (mode_ == Overlong::drop) {
      if (line_.size() + part.size() > max_) {
        line_.clear();
        skipping_ = !ends;
        if (on_overlong) on_overlong();
        continue;
      }
      line_.append(part);
      if (ends) emit(on_line, true);
      continue;
    }
    // split: a piece goes out once more than max_ bytes are there (so a line of
    // exactly max_ bytes is one line), except for a '\r' that may end a CRLF line.
    while (true) {
      std::size_t room = max_ + 1 - line_.size();  // line_ holds at most max_ + 1 bytes
      std::size_t take = std::min(room, part.size());
      line_.append(part.substr(0, take));
      part.remove_prefix(take);
      if (line_.size() <= max_) break;
      if (part.empty() && line_.back() == '\r') break;  // its newline may come next
      on_line(std::string_view(line_).substr(0, max_));
      line_.erase(0, max_);
    }
    if (ends) emit(on_line, true);
  }
}

void LineSplitter::finish(const LineFn& on_line) {
  if (!line_.empty()) emit(on_line, true);
  reset();
}

void LineSplitter::reset() {
  line_.clear();
  skipping_ = false;
}

}  // namespace sprout
