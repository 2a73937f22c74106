// The agent's durable memory: STATEDIR/state.json, written atomically (temp file,
// fsync, rename, fsync of the directory), so a power cut leaves the old or the new
// state. What it holds, for the generation it last worked on:
//   {"version":1, "generation": G, "attempts": N, "builtSystem": P|"", "applied": bool,
//    "appliedSystem": P|"", "lastResult": text}
// A missing file is "no state". A garbled one is also "no state", with `problem` set
// so the agent reports it; it never stops the agent.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace sprout::agent {

struct AgentState {
  std::string generation;
  std::int64_t attempts = 0;      ///< rebuilds started for `generation`
  std::string built_system;       ///< the system profile a successful rebuild produced
  bool applied = false;           ///< the machine runs built_system for `generation`
  std::string applied_system;
  std::string last_result;        ///< short human text of the last outcome

  std::string to_json_text() const;
  bool operator==(const AgentState&) const = default;
};

struct LoadedState {
  std::optional<AgentState> state;  ///< empty: none (missing or garbled)
  std::string problem;              ///< set when the file exists but could not be used
};

LoadedState load_agent_state(const std::string& file);

/// Atomic replace; throws std::system_error naming the file.
void save_agent_state(const std::string& file, const AgentState& s);

}  // namespace sprout::agent
