// sprout export / prepare / gc / check-spec: the commands that build a VM's disks.
#include <filesystem>
#include <iostream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "cli_util.h"
#include "commands.h"
#include "error.h"
#include "export.h"
#include "gc_roots.h"
#include "overlay.h"
#include "prepare.h"
#include "spec.h"
#include "spec_dir.h"
#include "vm_name.h"

namespace sprout {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void print_export(const ExportResult& r) {
  fmt::print("{} generation {}\n", r.manifest.name, r.manifest.generation.substr(0, 16));
  for (const auto& i : r.images)
    fmt::print("  {:<7} {} -> {} ({} MiB, {})\n", role_info(i.role).name, i.link.string(), i.image.string(),
               i.bytes >> 20, i.cache_hit ? "cached" : "built");
  for (const auto& x : r.excluded) fmt::print("  left out ssh/{}: {}\n", x.path, x.reason);
}

}  // namespace

int cmd_export(const Args& args) {
  cxxopts::Options o("sprout export",
                     "Turn a VM's config, self and ssh directories into read-only ext4 disk images.\n"
                     "Either --spec FILE, or --name with --config, --self and --out for ad-hoc use.");
  o.add_options()("spec", "VM spec file", cxxopts::value<std::string>())(
      "name", "VM name (without --spec)", cxxopts::value<std::string>())(
      "config", "shared config tree (without --spec)", cxxopts::value<std::string>())(
      "self", "the VM's own config (without --spec)", cxxopts::value<std::string>())(
      "ssh", "ssh directory (optional)", cxxopts::value<std::string>())(
      "out", "where the <role>.img links go (without --spec)", cxxopts::value<std::string>())(
      "cache", "image cache directory", cxxopts::value<std::string>())(
      "allow-private-keys", "export private keys found in the ssh directory")(
      "json", "print what was written as JSON");
  bool help = false;
  auto a = parse_subcommand(o, args, &help);
  if (help) return 0;

  ExportRequest req;
  if (a.count("spec")) {
    for (auto flag : {"name", "config", "self", "ssh", "out"})
      if (a.count(flag)) throw InputError(fmt::format("--{} cannot be combined with --spec; edit the spec instead", flag));
    req = ExportRequest::from_spec(load_spec(a["spec"].as<std::string>()));
  } else {
    for (auto flag : {"name", "config", "self", "out"})
      if (!a.count(flag)) throw InputError(fmt::format("missing --{} (or give --spec FILE)", flag));
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
  if (a.count("json"))
    std::cout << result.to_json().dump(2) << std::endl;
  else
    print_export(result);
  return 0;
}

int cmd_prepare(const Args& args) {
  cxxopts::Options o("sprout prepare",
                     "Export a VM's disks and create its root overlay on the base image if it has none.\n"
                     "An existing overlay is never overwritten; a changed base follows the spec's baseChange.");
  o.add_options()("spec", "VM spec file", cxxopts::value<std::string>())("json", "print the result as JSON");
  bool help = false;
  auto a = parse_subcommand(o, args, &help);
  if (help) return 0;
  Spec spec = spec_option(a);
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

int cmd_gc(const Args& args) {
  cxxopts::Options o("sprout gc",
                     "Remove GC roots that no VM spec uses any more, and cached images that no VM links to (as\n"
                     "the images' user records say, whatever spec dir, or the specs here). Never touches overlays.\n"
                     "Refuses to run while any spec in the directory is invalid.");
  o.add_options()("spec-dir", "directory of VM specs", cxxopts::value<std::string>()->default_value(kDefaultSpecDir))(
      "cache-dir", "extra cache directory to clean", cxxopts::value<std::vector<std::string>>())(
      "gc-root-dir", "extra GC root directory to clean", cxxopts::value<std::vector<std::string>>())(
      "dry-run", "only print what would be removed");
  bool help = false;
  auto a = parse_subcommand(o, args, &help);
  if (help) return 0;
  std::vector<Spec> specs;  // what every VM uses: a spec that does not load stops gc
  for (auto& f : load_spec_dir(a["spec-dir"].as<std::string>())) {
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
  return 0;
}

int cmd_check_spec(const Args& args) {
  cxxopts::Options o("sprout check-spec", "Validate VM spec files and print what is wrong with each.");
  o.add_options()("files", "spec files", cxxopts::value<std::vector<std::string>>());
  o.parse_positional({"files"});
  o.positional_help("FILE...");
  bool help = false;
  auto a = parse_subcommand(o, args, &help);
  if (help) return 0;
  if (!a.count("files")) throw InputError("give at least one spec file");
  int status = 0;
  for (const auto& f : a["files"].as<std::vector<std::string>>()) {
    try {
      Spec s = load_spec(f);
      fmt::print("{}: ok ({}, backend {}{})\n", f, s.name, s.backend, s.host_built() ? ", system built by the host" : "");
    } catch (const InputError& e) {
      fmt::print("{}\n", e.what());
      status = 2;
    }
  }
  return status;
}

}  // namespace sprout
