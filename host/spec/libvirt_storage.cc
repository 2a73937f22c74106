#include "spec/libvirt_storage.h"

namespace sprout {

bool libvirt_uri_is_remote(std::string_view uri) {
  const auto sep = uri.find("://");
  if (sep == std::string_view::npos) return true;
  std::string_view rest = uri.substr(sep + 3);
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (auto at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
  if (!authority.empty() && authority.front() == '[') return true;  // an IPv6 address
  authority = authority.substr(0, authority.find(':'));
  return !authority.empty();
}

}  // namespace sprout
