// sprout wait: follow a VM's current run until it reaches a phase, fails, or can no
// longer get there. It answers about the run that is current (run_state.h), never
// from the record of one that ended before; a VM that is not running is an answer
// at once (unless --start-timeout gives it time to start), one never run is waited for.
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iostream>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "error.h"
#include "backend/backend.h"
#include "status/run_state.h"
#include "spec/spec.h"
#include "status_protocol.h"
#include "status/status_recorder.h"
#include "status/status_store.h"
#include "cli/terminal_style.h"
#include "base/terminal_text.h"
#include "cli/time_span.h"
#include "spec/spec_dir.h"
#include "cli/vm_locator.h"

namespace sprout {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// wait's exit statuses (docs and --help say the same).
constexpr int kReached = 0, kCannotReach = 1, kTimedOut = 3;

/// What the guest is doing while it says nothing, in words for the live line.
std::string silent_because(const std::string& phase, const StatusRecord& st) {
  if (st.host.state == HostState::preparing) return "preparing the VM's disks";
  if (st.host.state == HostState::reconnecting) return "its recorder lost the status channel and is reconnecting";
  if (phase.empty())
    return st.host.state == HostState::waiting ? "waiting for the VM to start"
                                               : "waiting for the guest's first report (booting)";
  if (phase == "rebooting") return "the guest is rebooting";
  if (phase == "rebuilt") return "waiting for the guest to reboot";
  return "";
}

/// One progress line: "web: rebuilding: copying path ..." (the phase once).
std::string progress_line(const std::string& name, const StatusRecord& st) {
  std::string phase = st.phase_name();
  std::string msg = st.newest_message();
  std::string head = fmt::format("{}: {}", name, phase.empty() ? "starting" : phase);
  if (msg.empty() || msg == phase) return head;
  // The agent often starts a message with the phase's word: say it once.
  if (msg.rfind(phase + ":", 0) == 0 || msg.rfind(phase + " ", 0) == 0) msg = msg.substr(phase.size() + 1);
  while (!msg.empty() && msg.front() == ' ') msg.erase(0, 1);
  return msg.empty() ? head : head + ": " + msg;
}

/// The guest's last lines, each once (detail arrays and lastLog overlap).
std::vector<std::string> failure_lines(const StatusRecord& st) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  auto add = [&](const json& l) {
    std::string s = for_terminal(l.is_string() ? l.get<std::string>() : l.dump());
    if (seen.insert(s).second) out.push_back(s);
  };
  if (st.detail.is_object())
    for (const auto& field : st.detail)
      if (field.is_array())
        for (const auto& l : field) add(l);
  for (const auto& l : st.last_log) add(l);
  return out;
}

class Waiter {
 public:
  Waiter(Spec spec, std::string target, double timeout_s, double start_timeout_s, bool quiet, bool as_json)
      : spec_(std::move(spec)), target_(std::move(target)), timeout_s_(timeout_s), start_timeout_s_(start_timeout_s),
        silent_(quiet && !as_json), quiet_(quiet || as_json), json_(as_json), tty_(::isatty(1) == 1),
        colour_(colour_allowed(stdout)) {}
  int run();

 private:
  int answer(int status, const std::string& outcome, const std::string& text, const RecordFile& file);
  void show(const RecordFile& file, const std::string& note);
  void sleep_for_change(long long ms);
  double elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

  Spec spec_;
  std::string target_;
  double timeout_s_, start_timeout_s_;
  bool silent_;  // --quiet: nothing at all, the exit status says it
  bool quiet_, json_, tty_, colour_;
  Clock::time_point start_ = Clock::now();
  const std::int64_t start_ms_ = unix_time_ms();  // host clock, as the records' startedMs
  int ino_ = -1, wd_ = -1;
  std::string last_line_;
  Clock::time_point last_print_ = Clock::now();
  std::int64_t followed_started_ms_ = -1;  // the run this wait has seen live
};

int Waiter::answer(int status, const std::string& outcome, const std::string& text, const RecordFile& file) {
  const StatusRecord st = file.record.for_display();
  if (tty_ && !quiet_ && !last_line_.empty()) fmt::print("\r\033[K");
  if (silent_) {
    // --quiet: the exit status is the whole answer.
  } else if (json_) {
    json j{{"vm", spec_.name},           {"for", target_},
           {"outcome", outcome},         {"exitStatus", status},
           {"message", text},            {"elapsedSeconds", std::round(elapsed() * 10) / 10},
           {"phase", st.phase ? json(st.phase_name()) : json(nullptr)},
           {"generation", file.state == RecordFile::ok ? json(st.generation) : json(nullptr)}};
    if (outcome == "failed") j["lastLines"] = failure_lines(file.record);
    std::cout << j.dump(2) << std::endl;
  } else if (status == kReached) {
    fmt::print("{}\n", text);
  } else {
    fmt::print(stderr, "{}\n", text);
    if (outcome == "failed")
      for (const auto& l : failure_lines(file.record)) fmt::print(stderr, "  | {}\n", l);
  }
  std::fflush(stdout);
  if (ino_ >= 0) ::close(ino_);
  return status;
}

void Waiter::show(const RecordFile& file, const std::string& note) {
  if (quiet_) return;
  const StatusRecord st = file.record.for_display();
  std::string line = file.state == RecordFile::missing ? spec_.name + ": no record yet" : progress_line(spec_.name, st);
  if (!note.empty()) line += " (" + note + ")";
  if (tty_) {
    // One live line that fits the terminal; the answer is printed whole afterwards.
    std::string tail = fmt::format(" [{}s]", static_cast<long long>(elapsed()));
    int width = terminal_columns(stdout) - 1;
    std::string fitted = utf8_truncate(line, static_cast<std::size_t>(std::max<int>(10, width - tail.size())));
    std::string phase = st.phase_name();
    if (!phase.empty()) {
      auto at = fitted.find(phase);
      if (at != std::string::npos) fitted.replace(at, phase.size(), paint(phase, phase_tone(phase), colour_));
    }
    fmt::print("\r\033[K{}{}", fitted, tail);
    std::fflush(stdout);
  } else if (line != last_line_ || Clock::now() - last_print_ > std::chrono::seconds(30)) {
    // A pipe gets each change once, and a "still" line while the guest is silent.
    fmt::print("{}{}\n", line,
               line == last_line_ ? fmt::format(" - still, after {}s", static_cast<long long>(elapsed())) : "");
    std::fflush(stdout);
    last_print_ = Clock::now();
  }
  last_line_ = line;
}

void Waiter::sleep_for_change(long long left_ms) {
  if (wd_ < 0)
    wd_ = ::inotify_add_watch(ino_, spec_.state_dir.c_str(),
                              IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF);
  // Sleep on inotify; without the state directory yet, look again now and then; on a
  // terminal, tick each second for the elapsed time; for a run not recorded yet (the
  // lock is taken before the record), look again soon.
  int t = static_cast<int>(std::min<long long>(left_ms, wd_ < 0 ? 250 : (tty_ ? 1000 : 5'000)));
  pollfd p{ino_, POLLIN, 0};
  if (::poll(&p, 1, std::max(t, 0)) <= 0) return;
  alignas(inotify_event) char buf[8192];
  ssize_t n;
  while ((n = ::read(ino_, buf, sizeof(buf))) > 0) {
    // The state directory was removed (or moved away): watch it again once it is back,
    // or a recreated directory would never wake this wait.
    for (ssize_t off = 0; off < n;) {
      auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
        if (wd_ >= 0) ::inotify_rm_watch(ino_, wd_);
        wd_ = -1;
      }
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
    }
  }
}

int Waiter::run() {
  ino_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (ino_ < 0) throw std::runtime_error(fmt::format("inotify_init1: {}", std::strerror(errno)));
  const std::string& name = spec_.name;
  while (true) {
    const RecordFile file = read_record(spec_.status_file());
    const RunView v = view_run(spec_, file);
    const StatusRecord st = file.record.for_display();
    std::string note;
    if (v.state == RunView::live) {
      followed_started_ms_ = v.started_ms;
      std::string phase = st.phase_name();
      // Where the guest stands now comes first: a run that reached the phase in an
      // earlier boot and has failed since is failed.
      // (`started` is about the channel, which a failed guest has up.)
      if (phase == "failed" && target_ != "failed" && target_ != "started")
        return answer(kCannotReach, "failed",
                      fmt::format("{} failed: {} (all of it: sprout logs {})", name, st.message, vm_arguments(spec_)),
                      file);
      if (st.reached_phase(target_))
        return answer(kReached, "reached",
                      fmt::format("{} reached {} after {}s{}", name, target_, static_cast<long long>(elapsed()),
                                  st.generation.empty() ? "" : " (generation " + short_generation(st.generation) + ")"),
                      file);
      note = silent_because(phase, st);
    } else {
      // The run this wait followed, or one that started after this wait began (what
      // it was waiting for: `sprout run web & sprout wait web`), has ended: what it
      // reached before it ended counts. An older one is history.
      if (v.state == RunView::ended &&
          ((followed_started_ms_ >= 0 && v.started_ms == followed_started_ms_) || v.started_ms >= start_ms_)) {
        if (st.reached_phase(target_))
          return answer(kReached, "reached",
                        fmt::format("{} reached {} (its run has ended since: {})", name, target_, v.how), file);
        return answer(kCannotReach, "stopped",
                      fmt::format("{} stopped before reaching {}: {} (what happened: sprout logs {})", name, target_,
                                  v.how, vm_arguments(spec_)),
                      file);
      }
      const VmBackend& backend = backend_for(spec_);
      if (backend.running(spec_).value_or(false)) {
        note = backend.unrecorded_note(spec_);
      } else if (v.state == RunView::none) {
        // Never run: no history to mistake for an answer, and most likely about to
        // start (`sprout run NAME & sprout wait NAME`): wait for its first run.
        note = "no record yet: waiting for its first run";
      } else if (elapsed() >= start_timeout_s_) {
        std::string corrupt = for_terminal(file.corrupt_why);
        std::string why = v.state != RunView::corrupt ? "its last run ended: " + v.how
                          : corrupt.empty()           ? "its record is unreadable"
                                                      : "its record is unreadable (" + corrupt + ")";
        std::string start = backend.start_hint(spec_);
        return answer(kCannotReach, "not-running",
                      fmt::format("{} is not running, so it cannot reach {}: {} (start it: {}; what happened: "
                                  "sprout logs {})",
                                  name, target_, why, start, vm_arguments(spec_)),
                      file);
      } else {
        note = "not running; waiting for it to start";
      }
    }
    show(file, note);
    auto left = timeout_s_ - elapsed();
    if (left <= 0)
      return answer(kTimedOut, "timeout",
                    fmt::format("{}: timed out after {}s waiting for {} (now: {})", name, timeout_s_, target_,
                                file.state == RecordFile::missing ? "no record"
                                : st.phase                        ? st.phase_name()
                                                                  : "starting"),
                    file);
    double sleep_s = left;
    if (start_timeout_s_ > elapsed()) sleep_s = std::min(sleep_s, start_timeout_s_ - elapsed() + 0.01);
    sleep_for_change(static_cast<long long>(std::ceil(sleep_s * 1000)));
  }
}

}  // namespace

namespace {

void wait_options(cxxopts::Options& o) {
  declare_needs(o, Needs::one_vm);
  o.add_options()("for", "phase to wait for", cxxopts::value<std::string>()->default_value("specialized"), "PHASE")(
      "timeout", "how long to wait at most: seconds or a span (90s, 5min, 1h); 0: look once and answer",
      cxxopts::value<std::string>()->default_value("900"), "SPAN")(
      "start-timeout", "how long to give a VM that is not running to start (0: answer at once)",
      cxxopts::value<std::string>()->default_value("0"), "SPAN")("quiet", "print nothing: the exit status is the answer")(
      "json", "print the outcome as JSON (and nothing else)");
}

}  // namespace

int cmd_wait(const Invocation& inv) {
  const auto& a = inv.args;
  std::string target = a["for"].as<std::string>();
  auto target_phase = phase_from_name(target);
  if (target != "started" && (!target_phase || *target_phase == Phase::log))
    throw InputError(fmt::format("--for {}: not a phase (started, starting, mounting, rebuilding, rebuilt, rebooting, "
                                 "specialized, failed)",
                                 target));
  const double timeout_s = parse_time_span(a["timeout"].as<std::string>(), "timeout");
  const double start_s = parse_time_span(a["start-timeout"].as<std::string>(), "start-timeout");
  Spec spec = locate_vm(a);
  return Waiter(std::move(spec), target, timeout_s, start_s, a.count("quiet") > 0, a.count("json") > 0).run();
}

const Command kWaitCommand = {"wait", "wait until a VM reaches a phase",
    "Follow a VM's current run until it reaches a phase. Exit status: 0 reached; 1 it failed,\n"
    "stopped, or is not running (so it cannot get there); 2 bad input; 3 timed out.\n"
    "Phases: started (the guest's status channel is up), starting, mounting, rebuilding,\n"
    "rebuilt, rebooting, specialized, failed. A phase the run already passed is reached.\n"
    "A VM that ran before and is not running now is an answer at once (exit 1): to start it\n"
    "and wait, give it --start-timeout. A VM that never ran is waited for.",
    Needs::nothing, wait_options, cmd_wait};

}  // namespace sprout
