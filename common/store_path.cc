#include "store_path.h"

namespace sprout {

namespace {
constexpr std::string_view kBase32 = "0123456789abcdfghijklmnpqrsvwxyz";  // Nix's: no e o u t
constexpr std::size_t kHashChars = 32;
constexpr std::size_t kMaxNameBytes = 211;

bool name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         std::string_view("+-._?=").find(c) != std::string_view::npos;
}
}  // namespace

std::string store_path_problem(std::string_view path) {
  std::string prefix = std::string(kNixStoreDir) + "/";
  if (path.substr(0, prefix.size()) != prefix) return "is not in /nix/store (a Nix store path is /nix/store/HASH-NAME)";
  std::string_view base = path.substr(prefix.size());
  if (base.find('/') != std::string_view::npos)
    return "names a path inside a store object; give the store path itself (/nix/store/HASH-NAME)";
  if (base.size() < kHashChars + 2 || base[kHashChars] != '-')
    return "is not a store path: /nix/store/ must be followed by a 32-character hash, '-' and a name";
  for (char c : base.substr(0, kHashChars))
    if (kBase32.find(c) == std::string_view::npos) return "is not a store path: its hash is not Nix base-32";
  std::string_view name = base.substr(kHashChars + 1);
  if (name.size() > kMaxNameBytes) return "is not a store path: its name is longer than 211 bytes";
  if (name.front() == '.') return "is not a store path: its name starts with '.'";
  for (char c : name)
    if (!name_char(c)) return "is not a store path: its name has a character Nix does not allow";
  return "";
}

std::string_view store_path_hash(std::string_view path) {
  return path.substr(kNixStoreDir.size() + 1, kHashChars);
}

}  // namespace sprout
