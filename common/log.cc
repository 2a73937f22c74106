#include "log.h"

#include <cstdlib>
#include <string>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

namespace sprout {

void setup_logging(std::string_view program, std::string_view level) {
  auto logger = spdlog::stderr_color_mt(std::string(program));
  // Under systemd (JOURNAL_STREAM set) journald stamps each line itself.
  if (std::getenv("JOURNAL_STREAM"))
    logger->set_pattern("%^%l%$: %v");
  else
    logger->set_pattern("%H:%M:%S.%e %n %^%l%$: %v");
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") lvl = spdlog::level::info;
  logger->set_level(lvl);
  spdlog::set_default_logger(logger);
}

}  // namespace sprout
