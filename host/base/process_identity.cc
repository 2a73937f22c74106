#include "base/process_identity.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <fstream>
#include <sstream>
#include <string>

namespace sprout {

std::optional<std::uint64_t> process_start_ticks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text;
  if (!in || !std::getline(in, text)) return std::nullopt;
  // "PID (COMM) STATE ...": COMM may hold spaces and parentheses; fields after the
  // last ')' are plain. starttime is field 22, the 20th after the ')'.
  auto close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(text.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22; ++i)
    if (!(rest >> field)) return std::nullopt;
  try {
    return std::stoull(field);
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

nlohmann::json this_process_identity() {
  nlohmann::json j{{"supervisor", ::getpid()}};
  if (auto t = process_start_ticks(::getpid())) j["supervisorStart"] = *t;
  return j;
}

bool recorded_process_alive(const nlohmann::json& host) {
  if (!host.is_object() || !host.contains("supervisor") || !host["supervisor"].is_number_integer()) return false;
  auto pid = host["supervisor"].get<long long>();
  if (pid <= 0 || pid > INT_MAX) return false;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
  if (!host.contains("supervisorStart") || !host["supervisorStart"].is_number_unsigned()) return true;
  auto now = process_start_ticks(static_cast<pid_t>(pid));
  // /proc unreadable for it (hidepid): the pid is alive, assume it is the one.
  return !now || *now == host["supervisorStart"].get<std::uint64_t>();
}

}  // namespace sprout
