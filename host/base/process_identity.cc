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

ProcessIdentity ProcessIdentity::self() { return {::getpid(), process_start_ticks(::getpid())}; }

bool ProcessIdentity::alive() const {
  if (pid <= 0 || pid > INT_MAX) return false;
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
  if (!start_ticks) return true;
  auto now = process_start_ticks(static_cast<pid_t>(pid));
  // /proc unreadable for it (hidepid): the pid is alive, assume it is the one.
  return !now || *now == *start_ticks;
}

nlohmann::json this_process_identity() {
  ProcessIdentity me = ProcessIdentity::self();
  nlohmann::json j{{"supervisor", me.pid}};
  if (me.start_ticks) j["supervisorStart"] = *me.start_ticks;
  return j;
}

bool recorded_process_alive(const nlohmann::json& host) {
  if (!host.is_object() || !host.contains("supervisor") || !host["supervisor"].is_number_integer()) return false;
  ProcessIdentity who{host["supervisor"].get<std::int64_t>(), std::nullopt};
  if (host.contains("supervisorStart") && host["supervisorStart"].is_number_unsigned())
    who.start_ticks = host["supervisorStart"].get<std::uint64_t>();
  return who.alive();
}

}  // namespace sprout
