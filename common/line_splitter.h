// Bytes in, complete lines out: the one line splitter of the status recorder, the QMP
// client and run_process (which the guest agent runs its rebuilds with). A line ends
// at '\n'; neither the newline nor a '\r' just before it is part of the line handed
// out. A line is at most `max_line_bytes` bytes (a '\r' counted, the newline not);
// what happens to a longer one is the caller's choice:
//  - split: it is cut into pieces of max_line_bytes, each handed out as a line, the
//    last one what is left (a line of exactly max_line_bytes is one line);
//  - drop: it is handed out not at all, but reported once (on_overlong), and
//    everything up to its newline is skipped.
// The splitter holds at most max_line_bytes + 1 bytes, whatever it is fed.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace sprout {

class LineSplitter {
 public:
  enum class Overlong { split, drop };
  using LineFn = std::function<void(std::string_view)>;

  LineSplitter(std::size_t max_line_bytes, Overlong overlong) : max_(max_line_bytes ? max_line_bytes : 1), mode_(overlong) {}

  /// Hands every line that `bytes` completes to on_line, and reports each line dropped
  /// for its length to on_overlong (drop mode).
  void feed(std::string_view bytes, const LineFn& on_line, const std::function<void()>& on_overlong = {});
  /// Bytes of an unfinished line are held (a line being skipped does not count).
  bool has_partial() const { return !line_.empty(); }
  /// The stream ended: hands out the unfinished line, if any, then forgets everything.
  void finish(const LineFn& on_line);
  /// Forgets the unfinished line (a new stream starts).
  void reset();

 private:
  void emit(const LineFn& on_line, bool strip_cr);

  std::size_t max_;
  Overlong mode_;
  std::string line_;
  bool skipping_ = false;  ///< drop mode: inside an over-long line, until its newline
};

}  // namespace sprout
