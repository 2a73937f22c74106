// sprout export / prepare / gc / check-spec: the commands that build a VM's disks.
#include <filesystem>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "error.h"
#include "image/export.h"
#include "cli/pool_disks.h"
#include "disk/gc_roots.h"
#include "disk/overlay.h"
#include "disk/prepare.h"
#include "spec/spec.h"
#include "spec/spec_dir.h"
#include "cli/vm_locator.h"
#include "vm_name.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void print_export(const ExportResult& r) {
  fmt::print("{} generation {}\n", r.manifest.name, short_generation(r.manifest.generation));
  for (const auto& i : r.images)
    fmt::print("  {:<7} {} -> {} ({} MiB, {})\n", role_info(i.role).name, i.link.string(), i.image.string(),
               i.bytes >> 20, i.cache_hit ? "cached" : "built");
  for (const auto& x : r.excluded) fmt::print("  left out ssh/{}: {}\n", x.path, x.reason);
}

}  // namespace

namespace {

void export_options(cxxopts::Options& o) {
  declare_needs(o, Needs::one_vm);
  o.add_options()(
      "name", "VM name (without --spec)", cxxopts::value<std::string>(), "NAME")(
      "config", "shared config tree (without --spec)", cxxopts::value<std::string>(), "DIR")(
      "self", "the VM's own config (without --spec)", cxxopts::value<std::string>(), "DIR")(
      "ssh", "ssh directory (optional)", cxxopts::value<std::string>(), "DIR")(
      "out", "where the <role>.img links go (without --spec)", cxxopts::value<std::string>(), "DIR")(
      "cache", "image cache directory", cxxopts::value<std::string>(), "DIR")(
      "allow-private-keys", "export private keys found in the ssh directory")(
      "json", "print what was written as JSON");
}

}  // namespace

int cmd_export(const Invocation& inv) {
  const auto& a = inv.args;

  ExportRequest req;
  std::optional<Spec> spec;
  if (a.count("spec") || a.count("vm")) {
    for (auto flag : {"name", "config", "self", "ssh", "out"})
      if (a.count(flag))
        throw InputError(fmt::format("--{} cannot be combined with a VM's spec (NAME or --spec); edit the spec instead",
                                     flag));
    spec = locate_vm(a);
    req = export_request_for(*spec);
  } else {
    for (auto flag : {"name", "config", "self", "out"})
      if (!a.count(flag)) throw InputError(fmt::format("missing --{} (or give the VM: NAME or --spec FILE)", flag));
    req.name = a["name"].as<std::string>();
    if (auto p = vm_name_problem(req.name); !p.empty()) throw InputError("--name: " + p);
    req.config_source = a["config"].as<std::string>();
    req.self_source = a["self"].as<std::string>();
    if (a.count("ssh")) req.ssh_source = a["ssh"].as<std::string>();
    req.out_dir = a["out"].as<std::string>();
    req.cache_dir = req.out_dir / "cache";
    req.rebuild.target = default_rebuild_target(req.rebuild.mode);
  }
  if (a.count("cache")) req.cache_dir = a["cache"].as<std::string>();
  if (a.count("allow-private-keys")) req.allow_private_keys = true;
  auto result = export_disks(req);
  if (spec) record_export(*spec, result);
  if (a.count("json"))
    std::cout << result.to_json().dump(2) << std::endl;
  else
    print_export(result);
  return 0;
}

const Command kExportCommand = {"export", "build a VM's read-only config/self/ssh disk images",
    "Turn a VM's config, self and ssh directories into read-only ext4 disk images.\n"
    "A host-built VM (\"specialize\": \"host\") also gets its closure disk: the store paths of\n"
    "the spec's system that its baseSystem lacks, as a Nix binary cache the guest imports and\n"
    "checks (CACHE/closure-KEY.ext4, linked as STATE/closure.img; built with the host's Nix,\n"
    "shared by the VMs of one system, and not built again while it is cached).\n"
    "Either the VM (NAME or --spec FILE), or --name with --config, --self and --out for ad-hoc use\n"
    "(no closure disk: the system comes only from a spec).",
    Needs::nothing, export_options, cmd_export};

namespace {

void prepare_options(cxxopts::Options& o) {
  o.add_options()("json", "print the result as JSON");
}

}  // namespace

int cmd_prepare(const Invocation& inv) {
  const auto& a = inv.args;
  Spec spec = *inv.vm;
  auto prepared = prepare_vm(spec);
  const auto& exported = prepared.exported;
  const auto& overlay = prepared.overlay;
  const auto& root = prepared.gc_root;
  if (a.count("json")) {
    json j = exported.to_json();
    j["overlay"] = {{"path", overlay.overlay.string()}, {"action", overlay.action}, {"backing", overlay.backing.string()}};
    if (overlay.moved_aside) j["overlay"]["movedAside"] = overlay.moved_aside->string();
    j["gcRoot"] = root ? json(root->string()) : json(nullptr);
    std::cout << j.dump(2) << std::endl;
  } else {
    print_export(exported);
    fmt::print("  overlay {} ({}, base {})\n", overlay.overlay.string(), overlay.action, overlay.backing.string());
    if (overlay.moved_aside) fmt::print("  old overlay kept at {}\n", overlay.moved_aside->string());
    if (root) fmt::print("  GC root {}\n", root->string());
  }
  return 0;
}

const Command kPrepareCommand = {"prepare", "export, and create the VM's root overlay on the base image",
    "Export a VM's disks and create its root overlay on the base image if it has none.\n"
    "An existing overlay is never overwritten; a changed base follows the spec's baseChange.",
    Needs::one_vm, prepare_options, cmd_prepare};

namespace {

void gc_options(cxxopts::Options& o) {
  o.add_options()(
      "cache-dir", "extra cache directory to clean", cxxopts::value<std::vector<std::string>>(), "DIR")(
      "gc-root-dir", "extra GC root directory to clean", cxxopts::value<std::vector<std::string>>(), "DIR")(
      "dry-run", "only print what would be removed");
}

}  // namespace

int cmd_gc(const Invocation& inv) {
  const auto& a = inv.args;
  std::vector<Spec> specs;  // what every VM uses: a spec that does not load stops gc
  for (auto& f : load_spec_dir(inv.spec_dir)) {
    if (!f.spec) throw InputError(f.problem + " (gc needs every spec to know what is in use)");
    specs.push_back(std::move(*f.spec));
  }
  std::vector<fs::path> caches, roots;
  for (const auto& s : specs) {
    if (std::find(caches.begin(), caches.end(), s.cache_dir) == caches.end()) caches.push_back(s.cache_dir);
    if (std::find(roots.begin(), roots.end(), s.gc_root_dir) == roots.end()) roots.push_back(s.gc_root_dir);
  }
  if (a.count("cache-dir"))
    for (const auto& c : a["cache-dir"].as<std::vector<std::string>>()) caches.push_back(c);
  if (a.count("gc-root-dir"))
    for (const auto& r : a["gc-root-dir"].as<std::vector<std::string>>()) roots.push_back(r);
  if (caches.empty()) caches.push_back(kDefaultCacheDir);
  if (roots.empty()) roots.push_back(kDefaultGcRootDir);
  bool dry = a.count("dry-run") > 0;
  auto report = collect_garbage(specs, caches, roots, dry);
  const char* verb = dry ? "would remove" : "removed";
  for (const auto& p : report.removed_images) fmt::print("{} image {}\n", verb, p.string());
  for (const auto& p : report.removed_roots) fmt::print("{} GC root {}\n", verb, p.string());
  if (!report.dropped_user_records.empty())
    fmt::print("{} {} stale user record(s) (their links are gone or point at other images)\n",
               dry ? "would drop" : "dropped", report.dropped_user_records.size());
  fmt::print("{} {} image(s) and {} GC root(s); {} image(s) in use kept\n", verb, report.removed_images.size(),
             report.removed_roots.size(), report.kept_images.size());
  gc_pools(specs, dry);  // pool mode: volumes no spec or domain uses, never an overlay
  return 0;
}

const Command kGcCommand = {"gc", "remove cached images and GC roots no spec uses",
    "Remove GC roots that no VM spec uses any more, and cached images that no VM links to (as\n"
    "the images' user records say, whatever spec dir, or the specs here). Never touches overlays.\n"
    "Refuses to run while any spec in the directory is invalid.",
    Needs::spec_dir, gc_options, cmd_gc};

namespace {

/// What a spec that parsed refers to and is not there: each one, not just the first.
std::vector<std::string> missing_references(const Spec& s) {
  std::vector<std::string> out;
  std::error_code ec;
  auto need = [&](const fs::path& p, bool dir, const char* key) {
    bool ok = dir ? fs::is_directory(p, ec) : fs::is_regular_file(p, ec);
    if (!ok)
      out.push_back(fmt::format("{}: {}: {} not found", s.file.string(), key,
                                fmt::format("{} ({})", p.string(), dir ? "a directory" : "a file")));
  };
  need(s.base_image, false, "base.image");
  need(s.config_source, true, "sources.config");
  need(s.self_source, true, "sources.self");
  if (s.ssh_source) need(*s.ssh_source, true, "sources.ssh");
  if (s.kernel) {
    need(s.kernel->kernel, false, "kernel.path");
    if (s.kernel->initrd) need(*s.kernel->initrd, false, "kernel.initrd");
  }
  return out;
}

}  // namespace

namespace {

void check_spec_options(cxxopts::Options& o) {
  o.add_options()("files", "spec files, or spec directories (every *.json in them)",
                  cxxopts::value<std::vector<std::string>>())(
      "json", "print the result as JSON")(
      "no-files", "check the specs only, not the files they refer to (a build sandbox has none of them)");
  o.parse_positional({"files"});
  o.positional_help("FILE...");
}

}  // namespace

namespace {

/// The files to check: each FILE, and every *.json in each DIR (name order).
std::vector<std::pair<fs::path, bool>> spec_files(const std::vector<std::string>& args) {
  std::vector<std::pair<fs::path, bool>> out;  // (file, from a spec directory)
  for (const auto& f : args) {
    std::error_code ec;
    if (!fs::is_directory(f, ec)) {
      out.emplace_back(f, false);
      continue;
    }
    for (const auto& name : vm_names_in(f)) out.emplace_back(fs::path(f) / (name + ".json"), true);
  }
  return out;
}

json check_one(const fs::path& f, bool in_spec_dir, bool check_files) {
  json entry{{"file", f.string()}, {"problems", json::array()}, {"warnings", json::array()}};
  try {
    Spec s = load_spec(f);
    entry["name"] = s.name;
    entry["backend"] = name_of(s.backend);
    entry["specialize"] = name_of(s.specialize);
    if (f.filename() != s.name + ".json") {
      // Commands find a VM by NAME as NAME.json: this one only by --spec FILE.
      std::string why = fmt::format("{}: its name is \"{}\", so commands that take a NAME do not find it "
                                    "(a spec in a spec directory must be {}.json)",
                                    f.string(), s.name, s.name);
      entry[in_spec_dir ? "problems" : "warnings"].push_back(why);
    }
    if (check_files)
      for (auto& p : missing_references(s)) entry["problems"].push_back(p);
  } catch (const SpecProblems& e) {
    for (const auto& p : e.problems) entry["problems"].push_back(p);
  } catch (const InputError& e) {
    entry["problems"].push_back(e.what());
  }
  entry["ok"] = entry["problems"].empty();
  return entry;
}

}  // namespace

int cmd_check_spec(const Invocation& inv) {
  const auto& a = inv.args;
  if (!a.count("files")) throw InputError("give at least one spec file or spec directory");
  int status = 0;
  json report = json::array();
  for (const auto& [f, in_dir] : spec_files(a["files"].as<std::vector<std::string>>())) {
    json entry = check_one(f, in_dir, !a.count("no-files"));
    if (!entry["ok"].get<bool>()) status = 2;
    if (!a.count("json")) {
      if (entry["ok"].get<bool>())
        fmt::print("{}: ok ({}, backend {}{})\n", f.string(), entry["name"].get<std::string>(),
                   entry["backend"].get<std::string>(),
                   entry["specialize"] == "host" ? ", system built by the host" : "");
      for (const auto& p : entry["problems"]) fmt::print("{}\n", p.get<std::string>());
      for (const auto& w : entry["warnings"]) fmt::print("warning: {}\n", w.get<std::string>());
    }
    report.push_back(std::move(entry));
  }
  if (a.count("json")) std::cout << report.dump(2) << std::endl;
  return status;
}

const Command kCheckSpecCommand = {"check-spec", "validate spec files",
    "Validate VM spec files (a directory: every *.json in it) and print every problem found,\n"
    "all files in one run: the spec's own errors (each part of a spec is checked; within one\n"
    "part, such as network, the first), a name that is not the file's (a problem in a spec\n"
    "directory, a warning elsewhere) and every file it refers to that is not there (base\n"
    "image, sources, kernel, initrd). Exit 0 when all are good, 2 when any is not.",
    Needs::nothing, check_spec_options, cmd_check_spec};

}  // namespace sprout
