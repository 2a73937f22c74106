// STATEDIR/state.json, as the agent reads it at boot (a garbled file must be "no
// state" with a problem, never a crash); then the state it yields round-trips.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "agent_state.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static std::string file = [] {
    std::string tmpl = std::filesystem::temp_directory_path() / "sprout-fuzz-state-XXXXXX";
    if (!::mkdtemp(tmpl.data())) std::abort();
    return tmpl + "/state.json";
  }();
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto loaded = sprout::agent::load_agent_state(file);
  if (loaded.state) {
    sprout::agent::save_agent_state(file, *loaded.state);
    auto again = sprout::agent::load_agent_state(file);
    if (!again.state || !(*again.state == *loaded.state)) std::abort();  // must round-trip
  }
  return 0;
}
