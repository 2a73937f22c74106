// How every sprout program words a refused command line, so `sprout` and
// `sprout-agent` say it alike: "PROGRAM: WHAT (see `PROGRAM --help`)", a name or value
// in plain single quotes ('x', as git and the rest of sprout's messages quote them;
// cxxopts' own messages use U+2018/U+2019, which are replaced).
#pragma once

#include <string>

namespace sprout {

/// The message for an option parser's error text `what` (cxxopts' e.what()).
std::string option_error(const std::string& program, std::string what);

/// The message for a word on the command line that no option or operand takes.
std::string unexpected_argument(const std::string& program, const std::string& word);

}  // namespace sprout
