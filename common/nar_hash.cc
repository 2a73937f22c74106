#include "nar_hash.h"

#include <cctype>
#include <vector>

namespace sprout {

std::string nix_base32_of_hex(const std::string& hex) {
  static const char kChars[] = "0123456789abcdfghijklmnpqrsvwxyz";
  std::vector<unsigned char> bytes;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
    bytes.push_back(static_cast<unsigned char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  const std::size_t size = bytes.size();
  const std::size_t len = (size * 8 + 4) / 5;
  std::string out;
  for (std::size_t n = len; n-- > 0;) {
    std::size_t b = n * 5, i = b / 8, j = b % 8;
    unsigned c = (bytes[i] >> j) | (i + 1 >= size ? 0u : static_cast<unsigned>(bytes[i + 1]) << (8 - j));
    out.push_back(kChars[c & 0x1f]);
  }
  return out;
}

bool same_nar_hash(const std::string& recorded, const std::string& sha256_hex) {
  if (recorded.rfind("sha256:", 0) != 0) return false;
  std::string digits = recorded.substr(7);
  if (digits.size() == 64) {
    std::string lower = digits;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return lower == sha256_hex;
  }
  return digits.size() == 52 && sha256_hex.size() == 64 && digits == nix_base32_of_hex(sha256_hex);
}

}  // namespace sprout
