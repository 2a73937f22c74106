#include "log.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace sprout {

void setup_logging(std::string_view program, std::string_view level, bool colour) {
  const char* no_color = std::getenv("NO_COLOR");
  const bool tty = ::isatty(2) == 1;
  auto mode = colour && tty && !(no_color && *no_color) ? spdlog::color_mode::automatic : spdlog::color_mode::never;
  auto logger = spdlog::stderr_color_mt(std::string(program), mode);
  if (std::getenv("JOURNAL_STREAM") || tty)
    logger->set_pattern("%n: %^%l%$: %v");
  else
    logger->set_pattern("%H:%M:%S.%e %n %^%l%$: %v");
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") lvl = spdlog::level::info;
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
}

}  // namespace sprout
