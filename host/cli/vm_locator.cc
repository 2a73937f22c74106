#include "cli/vm_locator.h"

#include <algorithm>
#include <cstdlib>
#include <system_error>

#include <fmt/format.h>

#include "error.h"
#include "spec/spec_dir.h"
#include "vm_name.h"

namespace sprout {

namespace fs = std::filesystem;

void add_vm_options(cxxopts::Options& options) {
  options.add_options()("vm", "the VM's name (its spec is NAME.json in the spec directory)",
                        cxxopts::value<std::string>(), "NAME")(
      "spec", "the VM's spec file (instead of NAME)", cxxopts::value<std::string>(), "FILE");
  add_spec_dir_option(options);
  options.positional_help("NAME");
}

void add_spec_dir_option(cxxopts::Options& options) {
  options.add_options()("spec-dir", "directory of VM specs (default: $SPROUT_SPEC_DIR, else /etc/sprout/vms)",
                        cxxopts::value<std::string>(), "DIR");
}

fs::path spec_dir_from(const cxxopts::ParseResult& args) {
  if (args.count("spec-dir")) return args["spec-dir"].as<std::string>();
  return default_spec_dir();
}

std::vector<std::string> vm_names_in(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".json") names.push_back(e.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

Spec locate_vm(const cxxopts::ParseResult& args) {
  const bool by_name = args.count("vm") > 0;
  const std::string name = by_name ? args["vm"].as<std::string>() : "";
  if (by_name)
    if (auto p = vm_name_problem(name); !p.empty()) throw InputError(fmt::format("VM name \"{}\": {}", name, p));
  if (args.count("spec")) {
    Spec spec = load_spec(args["spec"].as<std::string>());
    if (by_name && spec.name != name)
      throw InputError(fmt::format("spec {} is for VM {}, not {}", spec.file.string(), spec.name, name));
    return spec;
  }
  if (!by_name) throw InputError("which VM? give its NAME (looked up in the spec directory) or --spec FILE");
  const fs::path dir = spec_dir_from(args);
  const fs::path file = dir / (name + ".json");
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    if (!fs::is_directory(dir, ec))
      throw InputError(fmt::format("no VM '{}': the spec directory {} does not exist (use --spec-dir DIR, "
                                   "$SPROUT_SPEC_DIR or --spec FILE)",
                                   name, dir.string()));
    auto names = vm_names_in(dir);
    std::string known = names.empty() ? "there are none" : "there are: " + fmt::format("{}", fmt::join(names, ", "));
    throw InputError(fmt::format("no VM '{}' in {} ({}.json not found; {})", name, dir.string(), name, known));
  }
  Spec spec = load_spec(file);
  if (spec.name != name)
    throw InputError(fmt::format("{}: its name is \"{}\" but a spec in a spec directory must be NAME.json; rename "
                                 "the file to {}.json or change its name",
                                 file.string(), spec.name, spec.name));
  return spec;
}

}  // namespace sprout
