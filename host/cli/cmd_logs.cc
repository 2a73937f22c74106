// sprout logs NAME [--follow]: a VM's events as they were recorded (events.jsonl.1,
// then events.jsonl): the guest's phases and the rebuild's output lines, and the
// host's own events (qemu started and exited, with what qemu said; stop asked; a new
// run; the exported configuration changed). Everything a guest wrote is escaped.
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <deque>
#include <fstream>
#include <iostream>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "error.h"
#include "status/run_state.h"
#include "spec/spec.h"
#include "strict_json.h"
#include "cli/terminal_style.h"
#include "base/terminal_text.h"
#include "cli/vm_locator.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string clock_of(std::int64_t ms) {
  if (ms <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

class Printer {
 public:
  Printer(bool as_json, bool colour) : json_(as_json), colour_(colour) {}
  /// Prints one line of `file`.
  void line(std::string_view text, const fs::path& file) {
    json e;
    try {
      e = parse_json_loosely(text, file.string());
    } catch (const JsonTooDeep& ex) {
      spdlog::warn("{} (a line skipped)", ex.what());  // not what sprout writes: say so
      return;
    } catch (const InputError&) {
      return;  // a line cut by a crash: skip it
    }
    if (!e.is_object()) return;
    if (json_) {
      std::cout << e.dump() << '\n';
      return;
    }
    bool host = record_text(e, "source") == "host";
    std::string when = clock_of(record_int(e, "hostTimeMs"));
    if (host) {
      fmt::print("{} {} {}\n", when, paint("host ", Tone::dim, colour_), record_text(e, "message"));
      if (e.contains("detail") && e["detail"].is_object() && e["detail"].contains("qemuStderr") &&
          e["detail"]["qemuStderr"].is_array())
        for (const auto& l : e["detail"]["qemuStderr"])
          if (l.is_string()) fmt::print("{}   qemu: {}\n", when, for_terminal(l.get<std::string>()));
      return;
    }
    std::string phase = record_text(e, "phase");
    if (phase == "log") {
      fmt::print("{} guest   | {}\n", when, record_text(e, "message"));
      return;
    }
    std::string msg = record_text(e, "message");
    if (msg.rfind(phase + ": ", 0) == 0) msg = msg.substr(phase.size() + 2);  // the phase once
    fmt::print("{} guest {}: {}\n", when, paint(phase, phase_tone(phase), colour_), msg);
  }

 private:
  bool json_, colour_;
};

/// Prints what is in `path` from `*offset` on (whole lines) and moves the offset.
void print_from(const fs::path& path, std::uint64_t* offset, Printer& p, std::size_t keep_last = 0) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return;
  in.seekg(static_cast<std::streamoff>(*offset));
  std::deque<std::string> last;
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline yet: a line being written; read it next time
    *offset += line.size() + 1;
    if (keep_last) {
      last.push_back(std::move(line));
      if (last.size() > keep_last) last.pop_front();
    } else {
      p.line(line, path);
    }
  }
  for (const auto& l : last) p.line(l, path);
  std::fflush(stdout);
}

}  // namespace

namespace {

void logs_options(cxxopts::Options& o) {
  o.add_options()("f,follow", "keep printing events as they come")(
      "n,lines", "only the last N events", cxxopts::value<std::size_t>(), "N")("json", "one JSON object per line");
}

}  // namespace

int cmd_logs(const Invocation& inv) {
  const auto& a = inv.args;
  Spec spec = *inv.vm;
  Printer p(a.count("json") > 0, colour_allowed(stdout));
  const fs::path events = spec.events_file(), older = spec.state().events_rotated();
  // -n N: the last N events (as journalctl's -n counts entries); -n 0 none (with
  // --follow: only what comes from now on).
  const std::optional<std::size_t> last_n =
      a.count("lines") ? std::optional<std::size_t>(a["lines"].as<std::size_t>()) : std::nullopt;
  std::uint64_t off_old = 0, off = 0;
  std::error_code ec;
  if (!fs::exists(events, ec) && !fs::exists(older, ec) && !a.count("follow")) {
    fmt::print(stderr, "{}: no events yet ({} does not exist: the VM has not run)\n", spec.name, events.string());
    return 0;
  }
  if (last_n) {
    // The last N over both files: the newer file's share first.
    std::deque<std::pair<std::string, const fs::path*>> all;
    for (const fs::path* f : {&older, &events}) {
      std::ifstream in(*f, std::ios::binary);
      std::string line;
      while (std::getline(in, line)) {
        all.emplace_back(line, f);
        if (all.size() > *last_n) all.pop_front();
      }
    }
    for (const auto& [l, f] : all) p.line(l, *f);
    off = fs::exists(events, ec) ? fs::file_size(events, ec) : 0;
    std::fflush(stdout);
  } else {
    print_from(older, &off_old, p);
    print_from(events, &off, p);
  }
  if (!a.count("follow")) return 0;

  // Follow: wake on changes in the state directory; a rotation (events.jsonl renamed
  // to .1) starts the new file from its beginning. Ends on SIGINT/SIGTERM/SIGHUP.
  sigset_t stop;
  sigemptyset(&stop);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&stop, s);
  ::sigprocmask(SIG_BLOCK, &stop, nullptr);
  int sfd = ::signalfd(-1, &stop, SFD_CLOEXEC);
  int ino = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (sfd < 0 || ino < 0) throw std::runtime_error(fmt::format("logs --follow: {}", std::strerror(errno)));
  int wd = -1;
  while (true) {
    if (wd < 0) {
      try {
        spec.state().make_private(spec.backend == Backend::libvirt);
      } catch (const std::exception&) {
      }
      wd = ::inotify_add_watch(ino, spec.state_dir.c_str(), IN_MODIFY | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF);
    }
    std::uint64_t size = fs::exists(events, ec) ? fs::file_size(events, ec) : 0;
    if (size < off) {
      // Rotated: finish the old file (now .1), then the new one from its start.
      print_from(older, &off, p);
      off = 0;
    }
    print_from(events, &off, p);
    pollfd fds[2] = {{sfd, POLLIN, 0}, {ino, POLLIN, 0}};
    int r = ::poll(fds, 2, wd < 0 ? 500 : 5000);
    if (r < 0 && errno != EINTR) throw std::runtime_error(fmt::format("poll: {}", std::strerror(errno)));
    if (fds[0].revents & POLLIN) break;
    if (fds[1].revents & POLLIN) {
      alignas(inotify_event) char buf[4096];
      ssize_t n;
      while ((n = ::read(ino, buf, sizeof buf)) > 0)
        for (ssize_t at = 0; at < n;) {
          auto* ev = reinterpret_cast<const inotify_event*>(buf + at);
          if (ev->mask & (IN_IGNORED | IN_DELETE_SELF)) wd = -1;
          at += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        }
    }
  }
  ::close(ino);
  ::close(sfd);
  return 0;
}

const Command kLogsCommand = {"logs", "a VM's events, the guest's and the host's (--follow)",
    "Show a VM's events: the guest's phases and its rebuild's output lines, and the host's own\n"
    "(qemu started/exited with what qemu said, stop asked, new run, configuration changed).\n"
    "--follow keeps printing new ones until interrupted.",
    Needs::one_vm, logs_options, cmd_logs};

}  // namespace sprout
