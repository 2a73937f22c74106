// Helpers shared by the subcommands: parsing a subcommand's options with cxxopts and
// printing its help.
#pragma once

#include <string>
#include <vector>

#include <cxxopts.hpp>

#include "spec/spec.h"

namespace sprout {

/// Parses `args` (without the program and subcommand names). Prints help and sets
/// `*help_shown` when --help was given. An unknown option, a missing option value or a
/// stray positional argument ("unexpected argument 'db'") is an InputError naming the
/// subcommand (exit status 2).
cxxopts::ParseResult parse_subcommand(cxxopts::Options& options, const std::vector<std::string>& args,
                                      bool* help_shown);

/// The spec named by the required --spec option (InputError when it is missing).
Spec spec_option(const cxxopts::ParseResult& args);

}  // namespace sprout
