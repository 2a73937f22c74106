#include "spec/size_units.h"

#include <array>
#include <limits>
#include <utility>

namespace sprout {

std::optional<std::uint64_t> memory_unit_bytes(std::string_view unit) {
  constexpr std::uint64_t K = 1024, D = 1000;
  static constexpr std::array<std::pair<std::string_view, std::uint64_t>, 14> kUnits{{
      {"b", 1}, {"bytes", 1},
      {"KB", D}, {"k", K}, {"KiB", K},
      {"MB", D * D}, {"M", K * K}, {"MiB", K * K},
      {"GB", D * D * D}, {"G", K * K * K}, {"GiB", K * K * K},
      {"TB", D * D * D * D}, {"T", K * K * K * K}, {"TiB", K * K * K * K},
  }};
  for (const auto& [name, bytes] : kUnits)
    if (name == unit) return bytes;
  return std::nullopt;
}

std::optional<std::uint64_t> disk_unit_bytes(std::string_view unit) {
  constexpr std::uint64_t K = 1024;
  if (unit == "K") return K;
  if (unit == "M") return K * K;
  if (unit == "G") return K * K * K;
  if (unit == "T") return K * K * K * K;
  return std::nullopt;
}

std::optional<std::uint64_t> checked_multiply(std::uint64_t amount, std::uint64_t unit_bytes) {
  if (unit_bytes != 0 && amount > std::numeric_limits<std::uint64_t>::max() / unit_bytes)
    return std::nullopt;
  return amount * unit_bytes;
}

}  // namespace sprout
