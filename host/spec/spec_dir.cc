#include "spec/spec_dir.h"

#include <cstdlib>

#include <algorithm>
#include <system_error>

#include <fmt/format.h>

#include "error.h"
#include "subprocess.h"

namespace sprout {

std::filesystem::path default_spec_dir() {
  const char* env = std::getenv("SPROUT_SPEC_DIR");
  return env && *env ? std::filesystem::path(env) : std::filesystem::path(kDefaultSpecDir);
}

namespace {

bool same_dir(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code ec;
  return std::filesystem::equivalent(a, b, ec) || a.lexically_normal() == b.lexically_normal();
}

}  // namespace

std::string vm_arguments(const Spec& spec) {
  const std::filesystem::path dir = spec.file.parent_path();
  if (spec.file.filename() != spec.name + ".json") return format_command({"--spec", spec.file.string()});
  if (same_dir(dir, default_spec_dir())) return spec.name;
  return format_command({spec.name, "--spec-dir", dir.string()});
}

bool installed_spec(const Spec& spec) {
  return spec.file.filename() == spec.name + ".json" && same_dir(spec.file.parent_path(), kDefaultSpecDir);
}

namespace fs = std::filesystem;

std::vector<SpecFile> load_spec_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw InputError(
        fmt::format("{}: spec directory not found (give --spec-dir DIR, or set $SPROUT_SPEC_DIR)", dir.string()));
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().extension() == ".json") files.push_back(e.path());
  if (ec) throw std::system_error(ec, "cannot read the spec directory " + dir.string());
  std::sort(files.begin(), files.end());
  std::vector<SpecFile> out;
  for (const auto& f : files) {
    SpecFile sf{f, std::nullopt, ""};
    try {
      sf.spec = load_spec(f);
      // One file per VM, named for it: two files can then never claim one VM.
      if (sf.spec->name != f.stem().string()) {
        sf.problem = fmt::format("{}: its name is \"{}\" but a spec in a spec directory must be NAME.json; rename "
                                 "the file to {}.json or change its name",
                                 f.string(), sf.spec->name, sf.spec->name);
        sf.spec.reset();
      }
    } catch (const InputError& e) {
      sf.problem = e.what();
    }
    out.push_back(std::move(sf));
  }
  return out;
}

}  // namespace sprout
