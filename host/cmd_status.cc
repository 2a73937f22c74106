// sprout status / sprout wait: where every VM stands, from the status.json files the
// recorders keep.
#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "terminal_text.h"

#include "cli_util.h"
#include "commands.h"
#include "error.h"
#include "spec.h"
#include "spec_dir.h"
#include "status_protocol.h"
#include "status_recorder.h"
#include "status_store.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

struct Known {
  std::string name;
  std::optional<Spec> spec;
  std::string problem;  ///< the spec did not load
};

std::vector<Known> known_vms(const fs::path& dir) {
  std::vector<Known> out;
  for (auto& f : load_spec_dir(dir)) {
    Known k;
    k.name = f.spec ? f.spec->name : f.path.stem().string();
    k.spec = std::move(f.spec);
    k.problem = f.problem;
    out.push_back(std::move(k));
  }
  return out;
}

/// A string field of a record, escaped for the terminal: status.json holds what a
/// guest chose.
std::string str(const json& j, const char* key) {
  if (j.is_object() && j.contains(key) && j[key].is_string()) return for_terminal(j[key].get<std::string>());
  return "";
}
std::int64_t num(const json& j, const char* key) {
  if (j.is_object() && j.contains(key) && j[key].is_number_integer()) return j[key].get<std::int64_t>();
  return 0;
}

std::string ago(std::int64_t ms) {
  if (ms <= 0) return "-";
  std::int64_t s = (unix_time_ms() - ms) / 1000;
  if (s < 0) s = 0;
  if (s < 120) return fmt::format("{}s ago", s);
  if (s < 7200) return fmt::format("{}m ago", s / 60);
  if (s < 172800) return fmt::format("{}h ago", s / 3600);
  return fmt::format("{}d ago", s / 86400);
}

std::string host_state(const json& st) {
  if (!st.is_object() || !st.contains("host")) return "";
  return str(st["host"], "state");
}

std::string phase_of(const json& st) {
  if (st.is_object() && st.contains("phase") && st["phase"].is_string()) return st["phase"].get<std::string>();
  return "";
}

std::string last_message(const json& st) {
  std::string m = str(st, "message");
  if (phase_of(st) == "rebuilding" && st.contains("lastLog") && st["lastLog"].is_array() && !st["lastLog"].empty() &&
      st["lastLog"].back().is_string())
    m = for_terminal(st["lastLog"].back().get<std::string>());
  return m;
}

/// A record describes a live run while `sprout run` (or `watch`) says so and that
/// process still exists: a supervisor that was SIGKILLed leaves "running" behind.
bool is_live(const json& st) {
  if (host_state(st) == "stopped") return false;
  if (!st.is_object() || !st.contains("host") || !st["host"].is_object()) return true;
  const json& h = st["host"];
  if (!h.contains("supervisor") || !h["supervisor"].is_number_integer()) return true;
  auto pid = h["supervisor"].get<long long>();
  if (pid <= 0 || pid > INT32_MAX) return false;
  return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

/// The system a record says the guest runs, short enough for a column: a store path
/// as HASH8-NAME ("8n3vhg33-nixos-system-web"), anything else cut; "-" for none.
std::string short_system(const json& st) {
  if (!st.is_object() || !st.contains("system") || !st["system"].is_object()) return "-";
  std::string path = str(st["system"], "path");
  if (path.empty()) return "-";
  std::string base = path.substr(path.rfind('/') + 1);
  if (path.rfind("/nix/store/", 0) == 0 && base.size() > 33 && base[32] == '-') base = base.substr(0, 8) + base.substr(32);
  return utf8_truncate(base, 40);
}

std::string built_by(const json& st) {
  if (!st.is_object() || !st.contains("system") || !st["system"].is_object()) return "-";
  std::string by = str(st["system"], "by");
  return by.empty() ? "-" : by;
}

}  // namespace

int cmd_status(const Args& args) {
  cxxopts::Options o("sprout status",
                     "Show where every VM (or the named ones) stands. BY and SYSTEM: the system the guest last\n"
                     "reported running, and who built it (host: \"specialize\": \"host\"; guest: nixos-rebuild).");
  o.add_options()("spec-dir", "directory of VM specs", cxxopts::value<std::string>()->default_value(kDefaultSpecDir))(
      "json", "print JSON")("names", "VM names", cxxopts::value<std::vector<std::string>>());
  o.parse_positional({"names"});
  bool help = false;
  auto a = parse_subcommand(o, args, &help);
  if (help) return 0;
  auto vms = known_vms(a["spec-dir"].as<std::string>());
  if (a.count("names")) {
    std::vector<Known> picked;
    for (const auto& n : a["names"].as<std::vector<std::string>>()) {
      auto it = std::find_if(vms.begin(), vms.end(), [&](const Known& k) { return k.name == n; });
      if (it == vms.end())
        throw InputError(fmt::format("no spec for VM '{}' in {}", n, a["spec-dir"].as<std::string>()));
      picked.push_back(*it);
    }
    vms = picked;
  }
  json all = json::array();
  for (const auto& k : vms) {
    json row{{"name", k.name}};
    if (!k.spec) {
      row["error"] = k.problem;
    } else {
      json st = read_status_file(k.spec->status_file());
      row["stateDir"] = k.spec->state_dir.string();
      row["specialize"] = k.spec->specialize;
      if (k.spec->host_built()) row["hostSystem"] = k.spec->system;  // what the host built for it
      row["status"] = st;  // null: no record
    }
    all.push_back(row);
  }
  if (a.count("json")) {
    std::cout << all.dump(2) << std::endl;
    return 0;
  }
  auto print_row = [](const std::string& name, const std::string& phase, const std::string& since,
                      const std::string& vm, const std::string& gen, const std::string& by, const std::string& sys,
                      const std::string& message) {
    fmt::print("{:<16} {:<12} {:<9} {:<9} {:<13} {:<6} {:<40} {}\n", name, phase, since, vm, gen, by, sys, message);
  };
  print_row("NAME", "PHASE", "SINCE", "VM", "GENERATION", "BY", "SYSTEM", "MESSAGE");
  for (const auto& row : all) {
    std::string name = row["name"];
    if (row.contains("error")) {
      print_row(name, "-", "-", "-", "-", "-", "-", "invalid spec: " + str(row, "error"));
      continue;
    }
    const json& st = row["status"];
    if (st.is_null()) {
      print_row(name, "-", "-", "-", "-", "-", "-", "no record yet (never started?)");
      continue;
    }
    if (st.contains("corrupt")) {
      print_row(name, "-", "-", "-", "-", "-", "-",
                "corrupt record: " + str(st, "corrupt") + "; the recorder writes a new one at the next event");
      continue;
    }
    std::string phase = phase_of(st);
    std::string hs = host_state(st);
    std::string gen = str(st, "generation").substr(0, 12);
    print_row(name, phase.empty() ? "-" : phase, ago(num(st, "sinceMs")), hs.empty() ? "-" : hs,
              gen.empty() ? "-" : gen, built_by(st), short_system(st), utf8_truncate(last_message(st), 100));
  }
  return 0;
}

int cmd_wait(const Args& args) {
  cxxopts::Options o("sprout wait",
                     "Wait until a VM reaches a phase. Exit 0 reached, 1 the guest failed (or the VM stopped),\n"
                     "2 timeout or bad input.");
  o.add_options()("name", "VM name", cxxopts::value<std::string>())(
      "for", "phase to wait for", cxxopts::value<std::string>()->default_value("specialized"))(
      "timeout", "seconds", cxxopts::value<double>()->default_value("900"))(
      "spec-dir", "directory of VM specs", cxxopts::value<std::string>()->default_value(kDefaultSpecDir))(
      "quiet", "print nothing but the outcome");
  o.parse_positional({"name"});
  bool help = false;
  auto a = parse_subcommand(o, args, &help);
  if (help) return 0;
  if (!a.count("name")) throw InputError("missing VM NAME");
  std::string name = a["name"].as<std::string>();
  std::string target = a["for"].as<std::string>();
  auto target_phase = phase_from_name(target);
  if (!target_phase || *target_phase == Phase::log)
    throw InputError(fmt::format("--for {}: not a phase (starting, mounting, rebuilding, rebuilt, rebooting, "
                                 "specialized, failed)", target));
  double timeout_s = a["timeout"].as<double>();
  if (!(timeout_s > 0) || timeout_s > 1e9) throw InputError("--timeout must be a number of seconds from 0 to 1e9");
  bool quiet = a.count("quiet") > 0;

  std::optional<Spec> spec;
  for (auto& k : known_vms(a["spec-dir"].as<std::string>()))
    if (k.name == name && k.spec) spec = k.spec;
  if (!spec) throw InputError(fmt::format("no valid spec for VM '{}' in {}", name, a["spec-dir"].as<std::string>()));

  const bool tty = ::isatty(1);
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(static_cast<long long>(timeout_s * 1000));
  const std::int64_t start_ms = unix_time_ms();
  int ino = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (ino < 0) throw std::runtime_error(fmt::format("inotify_init1: {}", std::strerror(errno)));
  int wd = -1;
  std::string last_shown;
  bool seen_live = false;

  auto elapsed = [&] { return std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start).count(); };
  auto show = [&](const json& st) {
    if (quiet) return;
    std::string phase = st.is_null() ? "no record" : phase_of(st);
    if (phase.empty()) phase = "starting";
    std::string line = fmt::format("{}: {} {}", name, phase, utf8_truncate(last_message(st), 90));
    if (tty) {
      fmt::print("\r\033[K{} [{}s]", line, elapsed());
      std::fflush(stdout);
    } else if (line != last_shown) {
      fmt::print("{}\n", line);
      std::fflush(stdout);
    }
    last_shown = line;
  };
  auto finish_line = [&] {
    if (tty && !quiet) fmt::print("\n");
  };

  while (true) {
    if (wd < 0) {
      wd = ::inotify_add_watch(ino, spec->state_dir.c_str(),
                               IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF);
    }
    json st = read_status_file(spec->status_file());
    if (st.contains("corrupt")) st = nullptr;  // as good as no record: wait for a new one
    bool live = !st.is_null() && is_live(st);
    if (live) seen_live = true;
    if (!st.is_null()) {
      std::string phase = phase_of(st);
      if (live && phase == target) {
        show(st);
        finish_line();
        fmt::print("{} reached {} after {}s\n", name, target, elapsed());
        ::close(ino);
        return 0;
      }
      if (live && phase == "failed") {
        show(st);
        finish_line();
        fmt::print(stderr, "{} failed: {}\n", name, str(st, "message"));
        const json& d = st["detail"];
        if (d.is_object())
          for (auto it = d.begin(); it != d.end(); ++it)
            if (it.value().is_array())
              for (const auto& l : it.value())
                fmt::print(stderr, "  {}\n", for_terminal(l.is_string() ? l.get<std::string>() : l.dump()));
        if (st.contains("lastLog") && st["lastLog"].is_array())
          for (const auto& l : st["lastLog"])
            fmt::print(stderr, "  | {}\n", for_terminal(l.is_string() ? l.get<std::string>() : l.dump()));
        ::close(ino);
        return 1;
      }
      // The run already ended, having reached the phase (a guest that powers off soon
      // after specializing, or a wait started late): that is an answer too.
      if (!live && phase == target) {
        show(st);
        finish_line();
        fmt::print("{} reached {} (its run has ended since: {})\n", name, target,
                   host_state(st) == "stopped" ? str(st["host"], "how") : "its supervisor is gone");
        ::close(ino);
        return 0;
      }
      // A stopped record that is older than this wait is a previous run: wait for the next.
      if (!live && (seen_live || num(st["host"], "stoppedMs") >= start_ms)) {
        finish_line();
        fmt::print(stderr, "{} stopped before reaching {}: {}\n", name, target, str(st["host"], "how"));
        ::close(ino);
        return 1;
      }
    }
    show(st);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      finish_line();
      fmt::print(stderr, "{}: timed out after {}s waiting for {} (now: {})\n", name, timeout_s, target,
                 st.is_null() ? "no record" : phase_of(st).empty() ? "starting" : phase_of(st));
      ::close(ino);
      return 2;
    }
    // Sleep on inotify; without the state directory yet, re-check it now and then; on
    // a terminal, tick once a second for the elapsed time.
    int t = static_cast<int>(std::min<long long>(left, wd < 0 ? 250 : (tty ? 1000 : 60'000)));
    pollfd p{ino, POLLIN, 0};
    if (::poll(&p, 1, t) > 0) {
      alignas(inotify_event) char buf[8192];
      ssize_t n;
      while ((n = ::read(ino, buf, sizeof(buf))) > 0) {
        // The state directory was removed (or moved away): watch it again once it is
        // back, or a recreated directory would never wake this wait.
        for (ssize_t off = 0; off < n;) {
          auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
          if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
            if (wd >= 0) ::inotify_rm_watch(ino, wd);
            wd = -1;
          }
          off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        }
      }
    }
  }
}

}  // namespace sprout
