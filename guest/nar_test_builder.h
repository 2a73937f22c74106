// Test helper: NARs written by hand (the format of Nix's `nix-store --dump`), so the
// import's tests need no Nix and can make malformed archives on purpose.
#pragma once

#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sprout::agent::testing {

class Nar {
 public:
  Nar() { str("nix-archive-1"); }
  Nar& str(const std::string& s) {
    std::uint64_t n = s.size();
    for (int i = 0; i < 8; ++i) bytes_.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    bytes_ += s;
    bytes_.append((8 - s.size() % 8) % 8, '\0');
    return *this;
  }
  Nar& file(const std::string& contents, bool exec = false) {
    str("(").str("type").str("regular");
    if (exec) str("executable").str("");
    return str("contents").str(contents).str(")");
  }
  Nar& symlink(const std::string& target) { return str("(").str("type").str("symlink").str("target").str(target).str(")"); }
  Nar& dir() { return str("(").str("type").str("directory"); }
  Nar& entry(const std::string& name) { return str("entry").str("(").str("name").str(name).str("node"); }
  Nar& end_entry() { return str(")"); }
  Nar& end_dir() { return str(")"); }
  std::string& bytes() { return bytes_; }

 private:
  std::string bytes_;
};

inline std::string sha256_hex(const std::string& data) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), d);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : d) out += {kHex[c >> 4], kHex[c & 15]};
  return out;
}

}  // namespace sprout::agent::testing
