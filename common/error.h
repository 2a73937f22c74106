// Error kinds shared by every sprout program.
//
// InputError: the user's input (a flag, a spec file, a tree to export) is wrong.
// Programs map it to exit status 2. Anything else derived from std::exception is a
// runtime failure, exit status 1. Messages name the thing and say what to do.
#pragma once

#include <stdexcept>
#include <string>

namespace sprout {

struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Exit statuses used by every command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

}  // namespace sprout
