// A poll loop's timeout: the milliseconds from now until a deadline, never negative
// and at most a minute (a loop wakes at least that often to look again).
#pragma once

#include <algorithm>
#include <chrono>

namespace sprout {

inline int ms_until(std::chrono::steady_clock::time_point deadline) {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
  return static_cast<int>(std::clamp<long long>(d, 0, 60'000));
}

}  // namespace sprout
