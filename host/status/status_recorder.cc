#include "status/status_recorder.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "base/terminal_text.h"

namespace sprout {

using nlohmann::json;

namespace {
constexpr std::uint64_t kMaxSeqGap = 1'000'000;
}  // namespace

std::int64_t unix_time_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

StatusRecorder::StatusRecorder(std::string vm, StatusStore& store, RecorderOptions options)
    : vm_(std::move(vm)),
      store_(store),
      options_(options),
      lines_(kMaxStatusLineBytes - 1, LineSplitter::Overlong::drop),  // (the newline counts)
      tokens_(options.log_burst),
      last_refill_(Clock::now()) {
  reset();
  dirty_ = false;
}

void StatusRecorder::reset() {
  record_ = StatusRecord{};
  record_.vm = vm_;
  record_.since_ms = record_.updated_ms = unix_time_ms();
  record_.message = "no event from the guest yet";
  dirty_ = true;
}

void StatusRecorder::resume_from(const StatusRecord& old) {
  record_.phase = old.phase;
  if (old.since_ms) record_.since_ms = old.since_ms;
  record_.generation = old.generation;
  record_.message = old.message;
  record_.boot_id = old.boot_id;
  record_.seq = old.seq;
  record_.detail = old.detail;
  record_.last_log = old.last_log;
  if (record_.last_log.size() > options_.last_log_lines)
    record_.last_log.erase(record_.last_log.begin(), record_.last_log.end() - options_.last_log_lines);
  record_.reached = old.reached;
  record_.system = old.system;
  record_.pending_generation = old.pending_generation;
  dirty_ = true;
}

void StatusRecorder::on_connect() {
  ++counters_.connections;
  lines_.reset();
}

void StatusRecorder::on_disconnect() {
  if (lines_.has_partial()) reject("partial line at disconnect", counters_.garbage, "no newline");
  lines_.reset();
}

void StatusRecorder::set_host(const HostPart& host) {
  record_.host = host;
  write_now();
}

void StatusRecorder::on_data(std::string_view bytes) {
  lines_.feed(
      bytes,
      [this](std::string_view line) {
        ++counters_.lines;
        handle_line(line);
      },
      [this] {
        ++counters_.lines;
        reject("over-long line", counters_.overlong, "longer than 4096 bytes");
      });
}

void StatusRecorder::reject(const char* kind, std::uint64_t& counter, std::string_view why) {
  ++counter;
  std::uint64_t bad = counters_.garbage + counters_.invalid_utf8 + counters_.overlong;
  if (bad <= 10 || bad % 1000 == 0)
    spdlog::warn("{}: status channel: {} dropped ({}); {} bad lines so far", vm_, kind, for_terminal(why), bad);
  schedule_write();
}

bool StatusRecorder::take_token() {
  auto now = Clock::now();
  double dt = std::chrono::duration<double>(now - last_refill_).count();
  last_refill_ = now;
  tokens_ = std::min(options_.log_burst, tokens_ + dt * options_.log_lines_per_second);
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

void StatusRecorder::handle_line(std::string_view line) {
  if (line.find_first_not_of(" \t") == std::string_view::npos) return;  // blank: ignore
  if (!is_valid_utf8(line)) {
    reject("line with invalid UTF-8", counters_.invalid_utf8, "not UTF-8");
    return;
  }
  DecodedStatus d = decode_status_line(line);
  if (!d.event) {
    reject("garbage line", counters_.garbage, d.error);
    return;
  }
  const StatusEvent& e = *d.event;
  ++counters_.accepted;
  json ev = status_event_to_json(e);
  ev["hostTimeMs"] = unix_time_ms();
  // "unknown": the guest could not read its manifest yet (its events still count).
  if (!e.vm.empty() && e.vm != vm_ && e.vm != "unknown") {
    accept_foreign(e, std::move(ev));
    return;
  }
  track_sequence(e);
  bool is_log = e.phase == Phase::log;
  if (!is_log || take_token())
    store_.append_event(ev);
  else
    ++counters_.thinned;

  record_.updated_ms = unix_time_ms();
  record_.boot_id = e.boot_id;
  record_.seq = e.seq;
  if (!e.generation.empty()) record_.generation = e.generation;
  if (is_log)
    apply_log(e);
  else
    apply_phase(e);
  if (on_event) on_event(e);
}

void StatusRecorder::accept_foreign(const StatusEvent& e, json ev) {
  // Another VM's disks are attached to this one: record what it says, but it is not
  // this VM's progress (a `wait` must not succeed on it).
  ++counters_.wrong_vm;
  ev["wrongVm"] = true;
  if (counters_.wrong_vm <= 3)
    spdlog::warn("{}: the guest reports that it is VM '{}'; check the spec's sources.self", vm_, e.vm);
  // Thinned and coalesced like log lines: a flood of them must cost what one costs.
  if (take_token())
    store_.append_event(ev);
  else
    ++counters_.thinned;
  record_.message = fmt::format("the guest reports that it is VM '{}' (check sources.self)", e.vm);
  schedule_write();
}

void StatusRecorder::track_sequence(const StatusEvent& e) {
  // (e.seq - last_seq_ without overflow: seq may be anything up to 2^64-1.)
  bool jumped = false;
  if (e.boot_id == last_boot_id_ && e.seq > last_seq_ && e.seq - last_seq_ > 1) {
    std::uint64_t missing = e.seq - last_seq_ - 1;
    // No guest loses a million events between two that arrive: a jump is a bogus
    // sequence number, not a count of losses.
    jumped = missing > kMaxSeqGap;
    if (!jumped) counters_.seq_gaps += missing;
    if (++gap_warnings_ <= 10 || gap_warnings_ % 1000 == 0) {
      if (jumped)
        spdlog::warn("{}: the sequence of boot {} jumped from {} to {}", vm_, for_terminal(e.boot_id), last_seq_, e.seq);
      else
        spdlog::warn("{}: {} status event(s) of boot {} never arrived (seq {} after {}; {} gaps so far)", vm_, missing,
                     for_terminal(e.boot_id), e.seq, last_seq_, gap_warnings_);
    }
  }
  // A bogus jump does not move the mark: the genuine events after it still count.
  if (e.boot_id != last_boot_id_ || (e.seq > last_seq_ && !jumped)) {
    last_boot_id_ = e.boot_id;
    last_seq_ = e.seq;
  }
}

void StatusRecorder::apply_log(const StatusEvent& e) {
  auto& log = record_.last_log;
  log.push_back(utf8_truncate(e.message, 512));
  if (log.size() > options_.last_log_lines) log.erase(log.begin(), log.end() - options_.last_log_lines);
  if (!record_.phase) record_.phase = Phase::rebuilding;
  schedule_write();
}

void StatusRecorder::apply_phase(const StatusEvent& e) {
  if (record_.phase != e.phase) record_.since_ms = unix_time_ms();
  if (e.phase == Phase::starting) record_.last_log.clear();
  record_.phase = e.phase;
  // Every phase this run has reached, once each, in order (`wait --for` a phase
  // already passed answers from it; at most the seven phase names).
  auto& reached = record_.reached;
  if (std::find(reached.begin(), reached.end(), e.phase) == reached.end()) reached.push_back(e.phase);
  record_.message = e.message;
  record_.detail = e.detail.is_object() ? e.detail : json(nullptr);
  record_.guest_time_ms = e.time_ms;
  if (e.phase == Phase::specialized) record_system(e);
  // An outcome is written at once (what `wait` waits for); other phases at most
  // every `coalesce`, so a guest flooding phase changes costs one write per period.
  if (e.phase == Phase::specialized || e.phase == Phase::failed)
    write_now();
  else
    schedule_write();
}

void StatusRecorder::schedule_write() {
  dirty_ = true;
  if (!pending_) pending_ = Clock::now() + options_.coalesce;
}

void StatusRecorder::record_system(const StatusEvent& e) {
  // What the guest runs, kept across later boots' phases (status shows it): bounded,
  // and "by" only one of the two words sprout knows.
  if (!e.detail.is_object()) return;
  auto sys = e.detail.find("currentSystem");
  if (sys == e.detail.end() || !sys->is_string()) return;
  auto by = e.detail.find("specializedBy");
  record_.system = GuestSystem{utf8_truncate(sys->get<std::string>(), 512),
                               by != e.detail.end() && (*by == "host" || *by == "guest") ? by->get<std::string>()
                                                                                         : "guest"};
  // keep_old: the configuration exported now, which the guest has not applied.
  auto pending = e.detail.find("pendingGeneration");
  record_.pending_generation =
      pending != e.detail.end() && pending->is_string() ? utf8_truncate(pending->get<std::string>(), 128) : "";
}

std::optional<StatusRecorder::Clock::time_point> StatusRecorder::flush_due() const { return pending_; }

void StatusRecorder::flush() {
  if (dirty_) write_now();
  pending_.reset();
}

void StatusRecorder::write_now() {
  record_.counters = counters_;
  try {
    store_.write_status(record_);
  } catch (const std::exception& ex) {
    spdlog::warn("{}: cannot write status.json: {}", vm_, ex.what());
  }
  dirty_ = false;
  pending_.reset();
}

}  // namespace sprout
