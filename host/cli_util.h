// Helpers shared by the subcommands: parsing a subcommand's options with cxxopts and
// printing its help.
#pragma once

#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "spec.h"

namespace sprout {

/// Parses `args` (without the program and subcommand names). Prints help and returns
/// nullopt-like false in `*help_shown` when --help was given. Unknown options and
/// stray positional arguments throw cxxopts exceptions (exit status 2).
cxxopts::ParseResult parse_subcommand(cxxopts::Options& options, const std::vector<std::string>& args,
                                      bool* help_shown);

/// The spec named by the required --spec option (InputError when it is missing).
Spec spec_option(const cxxopts::ParseResult& args);

}  // namespace sprout
