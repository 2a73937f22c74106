#include "vm_name.h"

#include <fmt/format.h>

namespace sprout {

namespace {
bool allowed(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}
}  // namespace

std::string vm_name_problem(std::string_view name) {
  if (name.empty()) return "a VM name must not be empty";
  if (name.size() > kMaxVmNameBytes)
    return fmt::format("a VM name must be at most {} bytes long; this one has {}", kMaxVmNameBytes,
                       name.size());
  if (name == "." || name == "..") return fmt::format("'{}' is not a usable VM name", name);
  for (std::size_t i = 0; i < name.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (c == '/') return "a VM name must not contain '/'";
    if (c < 0x20 || c == 0x7f)
      return fmt::format("a VM name must not contain control characters (byte 0x{:02x} at {})", c, i);
    if (!allowed(c))
      return fmt::format("a VM name may only use letters, digits, '.', '_' and '-' (found '{}' at {})",
                         c < 0x80 ? std::string(1, static_cast<char>(c)) : fmt::format("\\x{:02x}", c), i);
  }
  if (name.front() == '.' || name.front() == '-')
    return "a VM name must not start with '.' or '-'";
  return {};
}

}  // namespace sprout
