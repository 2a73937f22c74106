#include "decision.h"

#include <fmt/format.h>

namespace sprout::agent {

const char* action_name(Action a) {
  switch (a) {
    case Action::already_specialized: return "already-specialized";
    case Action::record_applied: return "record-applied";
    case Action::failed_not_booted: return "failed-not-booted";
    case Action::give_up: return "give-up";
    case Action::specialize: return "specialize";
    case Action::keep_old: return "keep-old";
  }
  return "?";
}

Decision decide(const DecisionInput& in) {
  Decision d;
  const bool same = in.state && in.state->generation == in.generation;
  if (same) {
    const AgentState& s = *in.state;
    d.next_state = s;
    if (s.applied) {
      d.action = Action::already_specialized;
      d.message = s.applied_system == in.current_system
                      ? fmt::format("specialized (generation {})", in.generation.substr(0, 12))
                      : fmt::format("specialized (generation {}); note: running {}, not {} which sprout built",
                                    in.generation.substr(0, 12), in.current_system, s.applied_system);
      return d;
    }
    if (!s.built_system.empty()) {
      if (s.built_system == in.current_system) {
        d.action = Action::record_applied;
        d.next_state.applied = true;
        d.next_state.applied_system = in.current_system;
        d.next_state.last_result = "applied";
        d.save = true;
        d.message = fmt::format("specialized: now running {}", in.current_system);
      } else {
        d.action = Action::failed_not_booted;
        d.message = fmt::format("the rebuild produced {} but the machine booted {}; not rebuilding again",
                                s.built_system, in.current_system.empty() ? "(no /run/current-system)" : in.current_system);
      }
      return d;
    }
    if (s.attempts >= in.max_attempts) {
      d.action = Action::give_up;
      d.message = fmt::format("gave up after {} attempts{}", s.attempts,
                              s.last_result.empty() ? "" : " (last: " + s.last_result + ")");
      return d;
    }
    d.action = Action::specialize;
    d.attempt = s.attempts + 1;
    d.next_state.attempts = d.attempt;
    d.save = true;
    d.message = fmt::format("specializing, attempt {} of {}", d.attempt, in.max_attempts);
    return d;
  }
  if (in.state && in.state->applied && !in.respecialize_on_change) {
    d.action = Action::keep_old;
    d.next_state = *in.state;
    d.message = fmt::format("the configuration changed (generation {}) but respecializeOnChange is off; staying on {}",
                            in.generation.substr(0, 12), in.state->applied_system);
    return d;
  }
  d.action = Action::specialize;
  d.attempt = 1;
  d.next_state = AgentState{};
  d.next_state.generation = in.generation;
  d.next_state.attempts = 1;
  d.save = true;
  d.message = in.state ? fmt::format("the configuration changed (generation {}); specializing, attempt 1 of {}",
                                     in.generation.substr(0, 12), in.max_attempts)
                       : fmt::format("specializing, attempt 1 of {}", in.max_attempts);
  return d;
}

}  // namespace sprout::agent
