// sprout status / sprout list: where every VM stands, from the records the recorders
// keep (run_state.h says when a record is the VM's current run and when history).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "error.h"
#include "identity/vm_identity.h"
#include "disk/prepare.h"
#include "image/source_generation.h"
#include "status/run_state.h"
#include "spec/spec.h"
#include "spec/spec_dir.h"
#include "status_protocol.h"
#include "status/status_recorder.h"
#include "cli/terminal_style.h"
#include "base/terminal_text.h"
#include "cli/vm_locator.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Known {
  std::string name;
  std::optional<Spec> spec;
  std::string problem;  ///< the spec did not load
};

/// The VMs to show: --spec FILE's, the named ones, or every one in the spec
/// directory. A name with no spec is left out and put in `missing` (the others are
/// still shown, as systemctl status does).
std::vector<Known> pick_vms(const cxxopts::ParseResult& a, std::vector<std::string>& missing) {
  if (a.count("spec")) {
    Spec spec = load_spec(a["spec"].as<std::string>());
    return {Known{spec.name, spec, ""}};
  }
  const fs::path dir = spec_dir_from(a);
  std::vector<Known> vms;
  for (auto& f : load_spec_dir(dir)) vms.push_back({f.path.stem().string(), std::move(f.spec), f.problem});
  if (!a.count("names")) return vms;
  std::vector<Known> picked;
  for (const auto& n : a["names"].as<std::vector<std::string>>()) {
    auto it = std::find_if(vms.begin(), vms.end(), [&](const Known& k) { return k.name == n; });
    if (it == vms.end())
      missing.push_back(n);
    else
      picked.push_back(*it);
  }
  return picked;
}

/// Says which names have no spec, and which VMs there are. Exit status 2.
int report_missing(const cxxopts::ParseResult& a, const std::vector<std::string>& missing) {
  const fs::path dir = spec_dir_from(a);
  auto names = vm_names_in(dir);
  for (const auto& n : missing)
    spdlog::error("no VM '{}' in {} ({}.json not found; {})", n, dir.string(), n,
                  names.empty() ? "there are none" : fmt::format("there are: {}", fmt::join(names, ", ")));
  return kExitUsage;
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


/// The system for a column: a store path's name without its hash, as Nix's tools show
/// it ("/nix/store/HASH-nixos-system-web-1" is "nixos-system-web-1", in any store
/// directory), anything else its last component; cut to fit; "-" for none. --long and
/// --json give the whole path.
std::string short_system(const StatusRecord& st) {
  std::string path = st.system ? st.system->path : "";
  if (path.empty()) return "-";
  std::string base = path.substr(path.rfind('/') + 1);
  constexpr std::size_t kHashChars = 32;
  auto hash_char = [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z'); };
  if (base.size() > kHashChars + 1 && base[kHashChars] == '-' &&
      std::all_of(base.begin(), base.begin() + kHashChars, hash_char))
    base = base.substr(kHashChars + 1);
  return utf8_truncate(base, 40);
}

std::string built_by(const StatusRecord& st) { return st.system && !st.system->by.empty() ? st.system->by : "-"; }

/// The run's state in the words the table's VM column and status.json use:
/// running, stopped, none (never ran), corrupt (its record is unreadable).
const char* view_name(RunView::State s) {
  switch (s) {
    case RunView::none: return "none";
    case RunView::corrupt: return "corrupt";
    case RunView::live: return "running";
    case RunView::ended: return "stopped";
  }
  return "none";
}

std::uint64_t allocated_bytes(const fs::path& p) {
  struct stat s {};
  return ::stat(p.c_str(), &s) == 0 ? static_cast<std::uint64_t>(s.st_blocks) * 512 : 0;
}

/// One VM: `j` as `status --json` and `list --json` give it (its spec's facts, the
/// record, and what the record means: run live, ended with how, none), and its record.
struct Row {
  json j;
  RecordFile file;
  StatusRecord shown;  ///< the record, escaped for a terminal
};

json describe_vm(const Spec& spec, const RecordFile& file, bool full) {
  json row{{"name", spec.name}};
  RunView v = view_run(spec, file);
  row["stateDir"] = spec.state_dir.string();
  row["backend"] = name_of(spec.backend);
  row["specialize"] = name_of(spec.specialize);
  if (spec.host_built()) row["hostSystem"] = spec.system;  // what the host built for it
  json run{{"state", view_name(v.state)}};
  if (v.state == RunView::ended) run["how"] = v.how;
  if (v.started_ms) run["startedMs"] = v.started_ms;
  if (v.ended_ms) run["endedMs"] = v.ended_ms;
  row["run"] = run;
  row["status"] = file.to_json();  // null: no record
  if (!full) return row;
  row["base"] = spec.base_image.string();
  json overlay{{"path", spec.overlay_path().string()}};
  std::error_code ec;
  overlay["exists"] = fs::exists(spec.overlay_path(), ec);
  overlay["allocatedBytes"] = allocated_bytes(spec.overlay_path());
  row["overlay"] = overlay;
  json disks = json::object();
  for (const char* role : {"config", "self", "ssh", "closure"}) {
    fs::path link = spec.exported_image(role);
    if (!fs::is_symlink(link, ec)) continue;
    fs::path target = fs::read_symlink(link, ec);
    disks[role] = {{"path", link.string()}, {"image", target.string()}, {"bytes", allocated_bytes(link)}};
  }
  if (fs::is_regular_file(fs::symlink_status(spec.exported_image("secrets"), ec)))
    disks["secrets"] = {{"path", spec.exported_image("secrets").string()},
                        {"image", spec.exported_image("secrets").string()},
                        {"bytes", allocated_bytes(spec.exported_image("secrets"))}};
  row["disks"] = disks;
  // Its identity, minted by its first prepare: what `sprout ssh` checks the guest by.
  json keys = json::array();
  try {
    if (auto id = read_identity(spec.state())) {
      for (const auto& k : id->host_keys)
        keys.push_back({{"type", k.type}, {"fingerprint", k.fingerprint}, {"publicKey", k.public_line}});
      row["machineId"] = id->machine_id;
    }
  } catch (const std::exception& e) {
    row["identityProblem"] = e.what();
  }
  row["sshHostKeys"] = keys;
  json ports = json::array();
  for (const auto& f : spec.network.forwards)
    ports.push_back({{"protocol", f.protocol},
                     {"hostAddress", f.host_address.empty() ? "127.0.0.1" : f.host_address},
                     {"hostPort", f.host_port},
                     {"guestPort", f.guest_port}});
  row["ports"] = ports;
  std::string exported = exported_generation(spec);
  const StatusRecord& st = file.record;
  std::string running = st.phase == Phase::specialized ? st.generation : "";
  std::string pending = st.pending_generation;
  row["exportedGeneration"] = exported.empty() ? json(nullptr) : json(exported);
  // The sources as they are now (as git status looks at a tree): a generation other
  // than the exported one is a configuration the next start exports. Read-only.
  bool sources_changed = false;
  if (!exported.empty()) {
    try {
      const std::string now = source_generation(export_request_for(spec));
      row["sourceGeneration"] = now;
      sources_changed = now != exported;
    } catch (const std::exception& e) {
      row["sourceGeneration"] = nullptr;
      row["sourceProblem"] = for_terminal(e.what());
    }
  }
  row["sourcesChanged"] = sources_changed;
  // Pending: the disks hold a configuration the guest has not applied yet (it will at
  // its next boot, or never while respecializeOnChange is off), or the sources changed
  // since they were exported.
  row["pendingRespecialization"] = sources_changed || !pending.empty() ||
                                   (!exported.empty() && !running.empty() && exported != running);
  return row;
}

Row describe(const Known& k, bool full) {
  Row row;
  if (!k.spec) {
    row.j = json{{"name", k.name}, {"error", k.problem}};
    return row;
  }
  row.file = read_record(k.spec->status_file());
  row.shown = row.file.record.for_display();
  row.j = describe_vm(*k.spec, row.file, full);
  row.j["name"] = k.name;
  return row;
}

std::string vm_state_word(const Row& row) {
  if (row.j["run"]["state"] == "stopped") return "stopped";
  std::string hs(name_of(row.shown.host.state));
  return hs.empty() ? "-" : hs;
}

std::string message_of(const Row& row) {
  if (row.file.state == RecordFile::corrupt)
    return "corrupt record: " + for_terminal(row.file.corrupt_why) +
           "; the recorder writes a new one at the next event";
  std::string m = utf8_truncate(row.shown.newest_message(), 100);
  const json& run = row.j["run"];
  if (run["state"] == "stopped")
    m = fmt::format("not running: {}{}", record_text(run, "how"),
                    run.contains("endedMs") ? fmt::format(" ({})", ago(record_int(run, "endedMs"))) : "");
  const std::string& pending = row.shown.pending_generation;
  if (!pending.empty()) m += fmt::format(" [pending generation {} not applied]", short_generation(pending));
  return m;
}

/// One table row's cells: NAME PHASE SINCE VM GENERATION BY SYSTEM MESSAGE.
std::vector<std::string> table_cells(const Row& r) {
  const json& row = r.j;
  const std::string name = row["name"];
  if (row.contains("error")) return {name, "-", "-", "-", "-", "-", "-", "invalid spec: " + record_text(row, "error")};
  if (r.file.state == RecordFile::missing) return {name, "-", "-", "-", "-", "-", "-", "no record yet (never started?)"};
  if (r.file.state == RecordFile::corrupt) return {name, "-", "-", "-", "-", "-", "-", message_of(r)};
  const StatusRecord& st = r.shown;
  const std::string phase = st.phase_name(), gen = short_generation(st.generation);
  return {name, phase.empty() ? "-" : phase, ago(st.since_ms), vm_state_word(r), gen.empty() ? "-" : gen,
          built_by(st), short_system(st), message_of(r)};
}

/// Columns as wide as what they hold; on a terminal the line fits its width (the
/// message, then the system, ellipsized, as systemctl does); a pipe gets it whole.
void print_table(const std::vector<Row>& all, bool colour) {
  std::vector<std::vector<std::string>> rows = {{"NAME", "PHASE", "SINCE", "VM", "GENERATION", "BY", "SYSTEM", "MESSAGE"}};
  for (const auto& r : all) rows.push_back(table_cells(r));
  std::vector<std::size_t> width(8, 0);
  for (const auto& cells : rows)
    for (std::size_t c = 0; c < 7; ++c) width[c] = std::max(width[c], utf8_columns(cells[c]));
  if (::isatty(1) == 1) {
    const std::size_t columns = static_cast<std::size_t>(terminal_columns(stdout, 80));
    std::size_t fixed = 0;
    for (std::size_t c = 0; c < 7; ++c) fixed += width[c] + 1;
    const std::size_t min_message = 20;
    if (fixed + min_message > columns && width[6] > 12)  // the system's name gives way first
      width[6] = std::max<std::size_t>(12, width[6] - std::min(width[6] - 12, fixed + min_message - columns));
    fixed = 0;
    for (std::size_t c = 0; c < 7; ++c) fixed += width[c] + 1;
    width[7] = columns > fixed + min_message ? columns - fixed - 1 : min_message;
    for (auto& cells : rows) {
      cells[6] = ellipsize(cells[6], width[6]);
      cells[7] = ellipsize(cells[7], width[7]);
    }
  }
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const auto& cells = rows[i];
    std::string line;
    for (std::size_t c = 0; c < 7; ++c) {
      std::string padded = cells[c] + std::string(width[c] - std::min(width[c], utf8_columns(cells[c])), ' ');
      line += (c == 1 && i > 0 ? paint(padded, phase_tone(cells[c]), colour) : padded) + " ";
    }
    fmt::print("{}{}\n", line, cells[7]);
  }
}

std::string human_bytes(std::uint64_t b) {
  if (b >= (1ull << 30)) return fmt::format("{:.1f} GiB", static_cast<double>(b) / (1ull << 30));
  if (b >= (1ull << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(b) / (1ull << 20));
  return fmt::format("{} KiB", b >> 10);
}

void print_long(const std::vector<Row>& all, bool colour) {
  bool first = true;
  for (const auto& r : all) {
    const json& row = r.j;
    if (!first) fmt::print("\n");
    first = false;
    std::string name = row["name"];
    if (row.contains("error")) {
      fmt::print("{}: invalid spec: {}\n", name, record_text(row, "error"));
      continue;
    }
    const StatusRecord& st = r.shown;
    const bool has_record = r.file.state != RecordFile::missing;
    std::string phase = st.phase_name();
    fmt::print("{} ({} backend, {})\n", paint(name, Tone::plain, false), record_text(row, "backend"),
               vm_state_word(r) == "-" ? "never started" : vm_state_word(r));
    fmt::print("  phase      {} {}\n", paint(phase.empty() ? "-" : phase, phase_tone(phase), colour),
               has_record ? ago(st.since_ms) : "");
    std::string msg = has_record ? message_of(r) : "no record yet (never started?)";
    if (!msg.empty()) fmt::print("  message    {}\n", msg);
    if (st.system) fmt::print("  system     {} (built by {})\n", st.system->path, built_by(st));
    fmt::print("  base       {}\n", record_text(row, "base"));
    const json& ov = row["overlay"];
    fmt::print("  overlay    {} ({})\n", record_text(ov, "path"),
               ov["exists"].get<bool>() ? human_bytes(ov["allocatedBytes"].get<std::uint64_t>()) + " on disk"
                                        : "not created yet");
    for (auto it = row["disks"].begin(); it != row["disks"].end(); ++it)
      fmt::print("  {:<10} {} -> {} ({})\n", it.key() + " disk", record_text(it.value(), "path"),
                 record_text(it.value(), "image"), human_bytes(it.value()["bytes"].get<std::uint64_t>()));
    for (const auto& k : row["sshHostKeys"])
      fmt::print("  host key   {} {}\n", record_text(k, "type"), record_text(k, "fingerprint"));
    if (row["sshHostKeys"].empty())
      fmt::print("  host key   {}\n", row.contains("identityProblem") ? record_text(row, "identityProblem")
                                                                       : "none yet (its first prepare mints it)");
    for (const auto& p : row["ports"])
      fmt::print("  port       {} {}:{} -> guest {}\n", record_text(p, "protocol"), record_text(p, "hostAddress"),
                 record_int(p, "hostPort"), record_int(p, "guestPort"));
    const std::string& running = st.generation;
    std::string exported = row["exportedGeneration"].is_string() ? record_text(row, "exportedGeneration") : "";
    // The generation covers the trees, the rebuild settings and (host-built) the
    // system: "what it exports" names them all. libvirt exports on `define`.
    const std::string why =
        row["sourcesChanged"].get<bool>()
            ? fmt::format(" - pending re-specialization: what it exports changed since the last export ({} exports "
                          "it again)",
                          record_text(row, "backend") == "libvirt" ? "`sprout define`" : "the next start")
            : " - pending re-specialization: the exported configuration is not the one running";
    fmt::print("  generation {} (exported: {}){}\n", running.empty() ? "-" : short_generation(running),
               exported.empty() ? "-" : short_generation(exported),
               row["pendingRespecialization"].get<bool>() ? paint(why, Tone::busy, colour) : "");
    if (row.contains("sourceProblem"))
      fmt::print("  sources    cannot be read: {}\n", record_text(row, "sourceProblem"));
  }
}

void common_options(cxxopts::Options& o) {
  o.add_options()("json", "print JSON")("spec", "a VM's spec file (instead of names)",
                                         cxxopts::value<std::string>(), "FILE")(
      "names", "VM names", cxxopts::value<std::vector<std::string>>());
  o.parse_positional({"names"});
  o.positional_help("[NAME...]");
}

void status_options(cxxopts::Options& o) {
  common_options(o);
  o.add_options()("long", "each VM in full (as `sprout list`)");
}

int show(const Invocation& inv, bool full) {
  const auto& a = inv.args;
  std::vector<std::string> missing;
  std::vector<Row> all;
  for (const auto& k : pick_vms(a, missing)) all.push_back(describe(k, full));
  if (a.count("json")) {
    json rows = json::array();
    for (const auto& r : all) rows.push_back(r.j);
    std::cout << rows.dump(2) << std::endl;
  } else if (!all.empty() || missing.empty()) {
    const bool colour = colour_allowed(stdout);
    if (full)
      print_long(all, colour);
    else
      print_table(all, colour);
  }
  std::fflush(stdout);
  return missing.empty() ? 0 : report_missing(a, missing);
}

int cmd_status(const Invocation& inv) { return show(inv, inv.args.count("long") > 0); }
int cmd_list(const Invocation& inv) { return show(inv, true); }

}  // namespace

const Command kStatusCommand = {
    "status", "show where every VM stands",
    "Show where every VM (or the named ones) stands. VM: the run's state, \"stopped\" when\n"
    "no run is current (the message says how the last one ended). BY and SYSTEM: the system\n"
    "the guest last reported running, and who built it (host: \"specialize\": \"host\";\n"
    "guest: nixos-rebuild). --long shows each VM in full, as `sprout list`.",
    Needs::spec_dir, status_options, cmd_status};

const Command kListCommand = {
    "list", "each VM in full: state, disks, ports, base, pending changes",
    "Each VM in full: backend, state, phase, ports, overlay and disks with their sizes, its\n"
    "base, and whether a re-specialization is pending: the exported configuration differs\n"
    "from the one running, or the sources changed since they were exported (found without\n"
    "writing anything, as git status finds a changed tree).",
    Needs::spec_dir, common_options, cmd_list};

}  // namespace sprout
