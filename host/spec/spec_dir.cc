#include "spec/spec_dir.h"

#include <algorithm>
#include <system_error>

#include <fmt/format.h>

#include "error.h"

namespace sprout {

namespace fs = std::filesystem;

std::vector<SpecFile> load_spec_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw InputError(fmt::format("{}: spec directory not found (use --spec-dir DIR)", dir.string()));
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
