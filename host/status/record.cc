#include "status/record.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "base/terminal_text.h"
#include "error.h"
#include "strict_json.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Lenient field readers: a missing or mistyped field is its empty value.
const json* field(const json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::string text(const json& j, const char* key) {
  const json* f = field(j, key);
  return f && f->is_string() ? f->get<std::string>() : "";
}

std::int64_t integer(const json& j, const char* key) {
  const json* f = field(j, key);
  return f && f->is_number_integer() ? f->get<std::int64_t>() : 0;
}

std::uint64_t count(const json& j, const char* key) {
  const json* f = field(j, key);
  return f && f->is_number_unsigned() ? f->get<std::uint64_t>() : 0;
}

std::vector<std::string> strings(const json& j, const char* key) {
  std::vector<std::string> out;
  if (const json* f = field(j, key); f && f->is_array())
    for (const auto& s : *f)
      if (s.is_string()) out.push_back(s.get<std::string>());
  return out;
}

constexpr HostState kHostStates[] = {HostState::preparing, HostState::starting, HostState::running,
                                     HostState::waiting,   HostState::reconnecting, HostState::stopping,
                                     HostState::stopped};

}  // namespace

std::string_view name_of(HostState s) {
  switch (s) {
    case HostState::none: return "";
    case HostState::preparing: return "preparing";
    case HostState::starting: return "starting";
    case HostState::running: return "running";
    case HostState::waiting: return "waiting";
    case HostState::reconnecting: return "reconnecting";
    case HostState::stopping: return "stopping";
    case HostState::stopped: return "stopped";
  }
  return "";
}

json RecorderCounters::to_json() const {
  return json{{"lines", lines},       {"accepted", accepted}, {"garbage", garbage},
              {"invalidUtf8", invalid_utf8}, {"overlong", overlong}, {"wrongVm", wrong_vm},
              {"seqGaps", seq_gaps}, {"thinned", thinned},   {"connections", connections}};
}

RecorderCounters RecorderCounters::from_json(const json& j) {
  return {count(j, "lines"),    count(j, "accepted"), count(j, "garbage"),
          count(j, "invalidUtf8"), count(j, "overlong"), count(j, "wrongVm"),
          count(j, "seqGaps"),  count(j, "thinned"),  count(j, "connections")};
}

json HostPart::to_json() const {
  json h = json::object();
  if (supervisor) {
    h["supervisor"] = supervisor->pid;
    if (supervisor->start_ticks) h["supervisorStart"] = *supervisor->start_ticks;
  }
  if (state != HostState::none) h["state"] = name_of(state);
  if (started_ms) h["startedMs"] = started_ms;
  if (stopped_ms) h["stoppedMs"] = stopped_ms;
  if (!how.empty()) h["how"] = how;
  if (exit) h["exit"] = *exit;
  if (qemu_pid > 0) h["pid"] = qemu_pid;
  if (watch) h["recorder"] = "watch";
  if (!channel.empty()) h["channel"] = channel;
  return h;
}

HostPart HostPart::from_json(const json& j) {
  HostPart h;
  const std::string state = text(j, "state");
  for (HostState s : kHostStates)
    if (name_of(s) == state) h.state = s;
  if (const json* pid = field(j, "supervisor"); pid && pid->is_number_integer()) {
    h.supervisor = ProcessIdentity{pid->get<std::int64_t>(), std::nullopt};
    if (const json* t = field(j, "supervisorStart"); t && t->is_number_unsigned())
      h.supervisor->start_ticks = t->get<std::uint64_t>();
  }
  h.qemu_pid = integer(j, "pid");
  h.watch = text(j, "recorder") == "watch";
  h.channel = text(j, "channel");
  h.started_ms = integer(j, "startedMs");
  h.stopped_ms = integer(j, "stoppedMs");
  h.how = text(j, "how");
  if (const json* e = field(j, "exit"); e && e->is_number_integer()) h.exit = e->get<int>();
  return h;
}

std::string StatusRecord::phase_name() const { return phase ? std::string(sprout::phase_name(*phase)) : ""; }

std::string StatusRecord::newest_message() const {
  if (phase == Phase::rebuilding && !last_log.empty()) return last_log.back();
  return message;
}

bool StatusRecord::reached_phase(std::string_view name) const {
  if (name == "started") return phase || !reached.empty() || host.state == HostState::running;
  auto p = phase_from_name(name);
  if (!p) return false;
  // A phase is reached when the run got there, or past it on the way to
  // `specialized`: a boot that takes the fast path (already specialized) never says
  // "rebuilding", and has passed it. `failed` is no step past anything.
  auto passed = [&](Phase q) { return q == *p || (*p != Phase::failed && q != Phase::failed && q > *p); };
  return (phase && passed(*phase)) || std::any_of(reached.begin(), reached.end(), passed);
}

StatusRecord StatusRecord::for_display() const {
  StatusRecord r = *this;
  for (std::string* s : {&r.vm, &r.generation, &r.message, &r.boot_id, &r.pending_generation, &r.host.how,
                         &r.host.channel})
    *s = for_terminal(*s);
  for (auto& l : r.last_log) l = for_terminal(l);
  if (r.system) {
    r.system->path = for_terminal(r.system->path);
    r.system->by = for_terminal(r.system->by);
  }
  return r;
}

json StatusRecord::to_json() const {
  json reached_names = json::array();
  for (Phase p : reached) reached_names.push_back(sprout::phase_name(p));
  json j{{"vm", vm},           {"phase", phase ? json(phase_name()) : json(nullptr)},
         {"sinceMs", since_ms}, {"updatedMs", updated_ms},
         {"generation", generation}, {"message", message},
         {"bootId", boot_id},  {"seq", seq},
         {"detail", detail.is_object() ? detail : json(nullptr)},
         {"lastLog", last_log}, {"reached", reached_names},
         {"host", host.to_json()}, {"counters", counters.to_json()}};
  if (guest_time_ms) j["guestTimeMs"] = *guest_time_ms;
  if (system) j["system"] = {{"path", system->path}, {"by", system->by}};
  if (!pending_generation.empty()) j["pendingGeneration"] = pending_generation;
  return j;
}

StatusRecord StatusRecord::from_json(const json& j) {
  StatusRecord r;
  r.vm = text(j, "vm");
  r.phase = phase_from_name(text(j, "phase"));
  if (r.phase == Phase::log) r.phase.reset();  // never a record's phase
  r.since_ms = integer(j, "sinceMs");
  r.updated_ms = integer(j, "updatedMs");
  r.generation = text(j, "generation");
  r.message = text(j, "message");
  r.boot_id = text(j, "bootId");
  r.seq = count(j, "seq");
  if (const json* t = field(j, "guestTimeMs"); t && t->is_number_integer()) r.guest_time_ms = t->get<std::int64_t>();
  if (const json* d = field(j, "detail"); d && d->is_object()) r.detail = *d;
  r.last_log = strings(j, "lastLog");
  for (const auto& name : strings(j, "reached"))
    if (auto p = phase_from_name(name); p && *p != Phase::log &&
                                        std::find(r.reached.begin(), r.reached.end(), *p) == r.reached.end())
      r.reached.push_back(*p);
  if (const json* s = field(j, "system"); s && s->is_object() && !text(*s, "path").empty())
    r.system = GuestSystem{text(*s, "path"), text(*s, "by")};
  r.pending_generation = text(j, "pendingGeneration");
  if (const json* c = field(j, "counters")) r.counters = RecorderCounters::from_json(*c);
  if (const json* h = field(j, "host")) r.host = HostPart::from_json(*h);
  return r;
}

json RecordFile::to_json() const {
  switch (state) {
    case missing: return nullptr;
    case corrupt: return json{{"corrupt", corrupt_why}};
    case ok: return record.to_json();
  }
  return nullptr;
}

std::string record_text(const json& j, const char* key) { return for_terminal(text(j, key)); }

std::int64_t record_int(const json& j, const char* key) { return integer(j, key); }

RecordFile read_record(const fs::path& path) {
  RecordFile f;
  std::ifstream in(path, std::ios::binary);
  if (!in) return f;
  std::stringstream ss;
  ss << in.rdbuf();
  json j;
  try {
    j = parse_json_loosely(ss.str(), path.string());
  } catch (const InputError& e) {
    // Nested too deep, or cut short: the reason, naming the file.
    f.state = RecordFile::corrupt;
    f.corrupt_why = e.what();
    return f;
  }
  if (!j.is_object() || !j.contains("vm") || !j["vm"].is_string()) {
    f.state = RecordFile::corrupt;
    f.corrupt_why = fmt::format("{} is not a status record sprout wrote (garbled or cut short)", path.string());
    return f;
  }
  f.state = RecordFile::ok;
  f.record = StatusRecord::from_json(j);
  return f;
}

}  // namespace sprout
