// What the agent does this boot, decided from the manifest, the durable state and
// the running system: pure logic, no I/O (unit-tested branch by branch).
//
//  state for this generation, applied, running = applied system  -> already_specialized
//  state for this generation, applied, running differs            -> already_specialized (note)
//  rebuilt for this generation, running = the built system        -> record_applied
//  rebuilt for this generation, running is something else         -> failed_not_booted (no loop)
//  attempts for this generation >= maxAttempts, none succeeded     -> give_up (no reboot)
//  no state / other generation (config changed)                   -> specialize (attempt 1)
//    ...unless an older generation is applied and respecializeOnChange is off -> keep_old
//  attempts started for this generation but none finished          -> specialize (attempt N+1)
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "agent_state.h"

namespace sprout::agent {

struct DecisionInput {
  std::string generation;        ///< from the manifest
  std::int64_t max_attempts = 3;
  bool respecialize_on_change = true;
  std::optional<AgentState> state;
  std::string current_system;    ///< resolved /run/current-system ("" if none)
};

enum class Action { already_specialized, record_applied, failed_not_booted, give_up, specialize, keep_old };

struct Decision {
  Action action = Action::specialize;
  std::int64_t attempt = 0;  ///< for specialize: this attempt's number (1-based)
  std::string message;       ///< the status message to report
  AgentState next_state;     ///< what to save (before acting, for specialize)
  bool save = false;         ///< next_state differs from the stored state
};

Decision decide(const DecisionInput& in);

const char* action_name(Action a);

}  // namespace sprout::agent
