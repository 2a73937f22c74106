// /etc/sprout/agent.json, as the agent parses it at boot.
#include <cstdint>
#include <string>

#include "agent_config.h"
#include "error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)sprout::agent::parse_agent_config(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const sprout::InputError&) {
  }
  return 0;
}
