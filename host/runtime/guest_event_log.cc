#include "runtime/guest_event_log.h"

#include <algorithm>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "runtime/notify.h"
#include "base/terminal_text.h"

namespace sprout {

namespace {
constexpr double kBurst = 20;
constexpr double kPerSecond = 5;
}  // namespace

bool GuestEventLog::take_token() {
  auto now = std::chrono::steady_clock::now();
  tokens_ = std::min(kBurst, tokens_ + std::chrono::duration<double>(now - last_refill_).count() * kPerSecond);
  last_refill_ = now;
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

void GuestEventLog::operator()(const StatusEvent& e) {
  if (e.phase == Phase::log) return;
  bool outcome = e.phase == Phase::specialized || e.phase == Phase::failed;
  bool ready = ready_on_outcome_ && !ready_sent_ && outcome;
  if (!take_token() && !ready) {
    ++suppressed_;
    return;
  }
  std::string text = fmt::format("{}: {}", phase_name(e.phase), for_terminal(utf8_truncate(e.message, 512)));
  if (suppressed_ > 0)
    spdlog::info("{}: guest {} ({} more guest events were not logged: too many)", vm_, text, suppressed_);
  else
    spdlog::info("{}: guest {}", vm_, text);
  suppressed_ = 0;
  // A guest that failed also ends the start-up: systemd must not time the unit out
  // and restart it into the same failure; STATUS= says what happened.
  if (ready) {
    notify_ready(text);
    ready_sent_ = true;
  } else {
    notify_status(text);
  }
}

}  // namespace sprout
