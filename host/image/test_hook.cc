#include "image/test_hook.h"

#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "subprocess.h"

namespace sprout {

void run_test_hook(const std::vector<std::string>& args) {
  const char* hook = std::getenv("SPROUT_TEST_HOOK");
  if (!hook || !*hook) return;
  ProcessOptions o;
  o.argv = {hook};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.timeout = std::chrono::minutes(10);
  o.on_line = [](std::string_view line) { spdlog::info("test hook: {}", line); };
  auto r = run_process(o);
  if (!r.ok()) throw std::runtime_error(fmt::format("{} {}", format_command(o.argv), r.describe()));
}

}  // namespace sprout
