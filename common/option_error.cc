#include "option_error.h"

#include <string_view>

#include <fmt/format.h>

namespace sprout {

std::string option_error(const std::string& program, std::string what) {
  for (std::string_view q : {"\u2018", "\u2019"})
    for (std::size_t at; (at = what.find(q)) != std::string::npos;) what.replace(at, q.size(), "'");
  return fmt::format("{}: {} (see `{} --help`)", program, what, program);
}

std::string unexpected_argument(const std::string& program, const std::string& word) {
  return fmt::format("{}: unexpected argument '{}' (see `{} --help`)", program, word, program);
}

}  // namespace sprout
