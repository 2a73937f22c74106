// What `sprout run` and `sprout watch` do with each event a guest reports (log lines
// aside): one log line and one systemd STATUS=, with the guest's text escaped for
// terminals (terminal_text.h), and at most a burst of 20 then 5 a second, so a
// flooding guest cannot flood the journal; how many were left out is said with the
// next line that is written. READY=1 goes out once, on `specialized` or `failed`
// (when `ready_on_outcome`), whatever the rate.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "status_protocol.h"

namespace sprout {

class GuestEventLog {
 public:
  GuestEventLog(std::string vm, bool ready_on_outcome) : vm_(std::move(vm)), ready_on_outcome_(ready_on_outcome) {}
  void operator()(const StatusEvent& e);

 private:
  bool take_token();

  std::string vm_;
  bool ready_on_outcome_;
  bool ready_sent_ = false;
  double tokens_ = 20;
  std::chrono::steady_clock::time_point last_refill_ = std::chrono::steady_clock::now();
  std::uint64_t suppressed_ = 0;
};

}  // namespace sprout
