// Which VM a subcommand is about. Every command that takes one accepts either its
// NAME, looked up as NAME.json in the spec directory (--spec-dir, else
// $SPROUT_SPEC_DIR, else /etc/sprout/vms), or `--spec FILE`. Errors are InputErrors
// that name what was looked for and where, and list the VMs that are there.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "spec/spec.h"

namespace sprout {

/// Declares NAME (positional, option "vm"), --spec FILE and --spec-dir DIR. Call
/// before invoke() (cli_util.h: declare_needs() calls it); commands with more positional arguments list "vm" first
/// in their own parse_positional().
void add_vm_options(cxxopts::Options& options);

/// Declares --spec-dir DIR alone (commands about every VM: status, gc).
void add_spec_dir_option(cxxopts::Options& options);

/// --spec-dir, else $SPROUT_SPEC_DIR (when set and not empty), else /etc/sprout/vms.
std::filesystem::path spec_dir_from(const cxxopts::ParseResult& args);

/// The spec of the VM the arguments name: --spec FILE (NAME, if also given, must be
/// its name), else DIR/NAME.json. InputError when neither is given, when NAME is not
/// a valid VM name, when there is no such VM (the message lists the ones there are),
/// or when its spec does not load.
Spec locate_vm(const cxxopts::ParseResult& args);

/// The VM names in `dir` (NAME.json files, whether their specs load or not), sorted.
std::vector<std::string> vm_names_in(const std::filesystem::path& dir);

}  // namespace sprout
