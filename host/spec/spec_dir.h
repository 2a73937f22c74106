// The spec directory (default /etc/sprout/vms): one NAME.json per VM. Loads every
// spec in it, in name order, keeping each file's problem instead of stopping at the
// first broken one (a spec whose `name` is not its file's name is one: so two files
// can never claim one VM); callers decide whether a broken spec is fatal (gc) or just shown
// (status).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "spec/spec.h"

namespace sprout {

struct SpecFile {
  std::filesystem::path path;
  std::optional<Spec> spec;  ///< empty when the file did not load
  std::string problem;       ///< why it did not load
};

/// The spec directory commands use when given none: $SPROUT_SPEC_DIR when set and not
/// empty, else /etc/sprout/vms.
std::filesystem::path default_spec_dir();

/// The arguments that name `spec`'s VM on sprout's command line from anywhere: "web"
/// for a spec in the default directory, "web --spec-dir DIR" for NAME.json elsewhere,
/// "--spec FILE" otherwise (quoted for a shell). Hints print them, so that the command
/// they suggest finds the same VM.
std::string vm_arguments(const Spec& spec);

/// Whether `spec` is one the installed systemd units run (a spec in /etc/sprout/vms).
bool installed_spec(const Spec& spec);

/// Every *.json in `dir`, sorted by file name. InputError when `dir` is not a directory.
std::vector<SpecFile> load_spec_dir(const std::filesystem::path& dir);

}  // namespace sprout
