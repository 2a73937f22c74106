#include "agent_state.h"

#include <unistd.h>

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "atomic_file.h"
#include "root_path.h"
#include "strict_json.h"

namespace sprout::agent {

std::string AgentState::to_json_text() const {
  nlohmann::json j{{"version", 1},
                   {"generation", generation},
                   {"attempts", attempts},
                   {"builtSystem", built_system},
                   {"applied", applied},
                   {"appliedSystem", applied_system},
                   {"lastResult", last_result}};
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

LoadedState load_agent_state(const std::string& file) {
  LoadedState out;
  if (::access(file.c_str(), F_OK) != 0) return out;
  std::string text = read_small_file(file, 64 * 1024 + 1);
  if (text.size() > 64 * 1024) {
    out.problem = fmt::format("{}: larger than 64 KiB; ignored (treated as no state)", file);
    return out;
  }
  try {
    auto doc = parse_json_text(text, file);
    StrictObject o(doc, file);
    auto version = o.integer("version", 0, 1000);
    if (version != 1) o.fail_value("version", "this agent reads version 1");
    AgentState s;
    s.generation = o.string("generation");
    s.attempts = o.integer_or("attempts", 0, 0, 1000000);
    s.built_system = o.string_or("builtSystem", "");
    s.applied = o.boolean_or("applied", false);
    s.applied_system = o.string_or("appliedSystem", "");
    s.last_result = o.string_or("lastResult", "");
    o.finish();
    out.state = s;
  } catch (const std::exception& e) {
    out.problem = fmt::format("{}; ignored (treated as no state)", e.what());
  }
  return out;
}

void save_agent_state(const std::string& file, const AgentState& s) {
  std::error_code ec;
  ensure_directory(parent_dir(file), ec);
  if (ec) throw std::system_error(ec, "cannot create " + parent_dir(file));
  write_file_atomic(file, s.to_json_text(), 0600);
}

}  // namespace sprout::agent
