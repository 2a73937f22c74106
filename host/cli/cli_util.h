// What every command shares, declared once: which VM it is about (and so which options
// it takes to say so: NAME or --spec FILE, --spec-dir), --help, and parsing with
// cxxopts. A command declares what it needs first, then its own options, then calls
// invoke(), which prints help or parses and locates what it needs, the same way for
// every command (the spec directory is always --spec-dir, else $SPROUT_SPEC_DIR, else
// /etc/sprout/vms).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "spec/spec.h"

namespace sprout {

enum class Needs {
  nothing,   ///< no VM (check-spec, domain-xml's ad-hoc use, ...)
  one_vm,    ///< one VM: NAME (the first positional) or --spec FILE, located for the command
  spec_dir,  ///< the VMs of the spec directory
};

struct Invocation {
  cxxopts::ParseResult args;
  std::optional<Spec> vm;          ///< Needs::one_vm: the VM's spec
  std::filesystem::path spec_dir;  ///< Needs::one_vm and Needs::spec_dir
};

/// Declares the options `needs` brings (before the command's own, so every command's
/// help lists them alike). Commands with more positional arguments than NAME call
/// parse_positional() after it, "vm" first.
void declare_needs(cxxopts::Options& options, Needs needs);

/// Parses `args` (without the program and command names) and locates what `needs`
/// says. --help prints the help and returns nothing (the command exits 0). An unknown
/// option, a missing option value or a stray positional argument ("unexpected argument
/// 'db'") is an InputError naming the command (exit status 2), as is a VM that cannot
/// be located (vm_locator.h).
std::optional<Invocation> invoke(cxxopts::Options& options, const std::vector<std::string>& args, Needs needs);

/// A generation as people read it: its first 12 hex digits, as git shortens hashes
/// (every command says it so; --json gives it whole).
inline std::string short_generation(const std::string& generation) { return generation.substr(0, 12); }

}  // namespace sprout
