#include "status/run_state.h"

#include <sys/stat.h>

#include <algorithm>

#include <fmt/format.h>

#include "base/process_identity.h"
#include "base/terminal_text.h"

namespace sprout {

using nlohmann::json;

std::string record_text(const json& j, const char* key) {
  if (j.is_object() && j.contains(key) && j[key].is_string()) return for_terminal(j[key].get<std::string>());
  return "";
}

std::int64_t record_int(const json& j, const char* key) {
  if (j.is_object() && j.contains(key) && j[key].is_number_integer()) return j[key].get<std::int64_t>();
  return 0;
}

std::string record_phase(const json& st) {
  if (st.is_object() && st.contains("phase") && st["phase"].is_string()) return st["phase"].get<std::string>();
  return "";
}

std::string record_message(const json& st) {
  std::string m = record_text(st, "message");
  if (record_phase(st) == "rebuilding" && st.contains("lastLog") && st["lastLog"].is_array() &&
      !st["lastLog"].empty() && st["lastLog"].back().is_string())
    m = for_terminal(st["lastLog"].back().get<std::string>());
  return m;
}

bool record_reached(const json& st, const std::string& phase) {
  if (!st.is_object()) return false;
  const json& reached = st.contains("reached") && st["reached"].is_array() ? st["reached"] : json::array();
  if (phase == "started") {
    const json& host = st.contains("host") ? st["host"] : json();
    return record_phase(st) != "" || !reached.empty() || record_text(host, "state") == "running";
  }
  return record_phase(st) == phase || std::find(reached.begin(), reached.end(), phase) != reached.end();
}

std::string channel_identity(const std::filesystem::path& socket) {
  struct stat s {};
  if (::stat(socket.c_str(), &s) != 0 || !S_ISSOCK(s.st_mode)) return "";
  return fmt::format("{}:{}:{}.{:09}", s.st_dev, s.st_ino, s.st_ctim.tv_sec, s.st_ctim.tv_nsec);
}

RunView view_run(const Spec& spec, const json& st) {
  RunView v;
  if (st.is_null()) return v;
  if (!st.is_object() || st.contains("corrupt")) {
    v.state = RunView::corrupt;
    return v;
  }
  const json host = st.contains("host") && st["host"].is_object() ? st["host"] : json::object();
  v.started_ms = record_int(host, "startedMs");
  const std::string state = record_text(host, "state");
  v.connected = state == "running";
  if (state == "stopped") {
    v.state = RunView::ended;
    v.how = record_text(host, "how");
    v.ended_ms = record_int(host, "stoppedMs");
    if (v.how.empty()) v.how = "stopped";
    return v;
  }
  if (!recorded_process_alive(host)) {
    v.state = RunView::ended;
    std::string who = record_text(host, "recorder") == "watch" ? "sprout watch" : "sprout run";
    v.how = host.contains("supervisor")
                ? fmt::format("its supervisor ({}, pid {}) is gone without saying how the run ended (killed?)", who,
                              record_int(host, "supervisor"))
                : "the record names no supervisor";
    return v;
  }
  if (record_text(host, "recorder") == "watch") {
    // A watcher outlives the runs it records: the run it describes is the one whose
    // status socket is still the one it connected to.
    if (state == "waiting" && !host.contains("channel")) {
      // Started, and no VM has connected to it yet: no run to describe so far (a
      // `wait` begun just before the watcher must not take this for a run that ended).
      v.state = RunView::none;
      return v;
    }
    if (state != "running") {
      v.state = RunView::ended;
      v.how = record_text(host, "how");
      if (v.how.empty()) v.how = "no VM is connected to its recorder (sprout watch)";
      return v;
    }
    if (record_text(host, "channel") != channel_identity(spec.status_socket())) {
      v.state = RunView::ended;
      v.how = "the VM's status socket is not the one its recorder connected to (the VM was restarted)";
      return v;
    }
  }
  v.state = RunView::live;
  return v;
}

}  // namespace sprout
