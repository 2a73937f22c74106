#include "nar_checksum.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <stdexcept>

#include <fmt/format.h>

namespace sprout {

struct NarChecksum::State {
  XXH3_state_t xxh;
};

NarChecksum::NarChecksum() : state_(std::make_unique<State>()) { XXH3_128bits_reset(&state_->xxh); }
NarChecksum::~NarChecksum() = default;

void NarChecksum::update(const void* data, std::size_t size) { XXH3_128bits_update(&state_->xxh, data, size); }

std::string NarChecksum::hex() const {
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&state_->xxh));
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : c.digest) out += {kHex[b >> 4], kHex[b & 15]};
  return out;
}

std::map<std::string, NarChecksumLine> parse_nar_checksums(const std::string& text) {
  std::map<std::string, NarChecksumLine> out;
  std::size_t at = 0, line = 0;
  while (at < text.size()) {
    std::size_t nl = text.find('\n', at);
    if (nl == std::string::npos) nl = text.size();
    std::string l = text.substr(at, nl - at);
    at = nl + 1;
    ++line;
    std::size_t sp1 = l.find(' '), sp2 = sp1 == std::string::npos ? sp1 : l.find(' ', sp1 + 1);
    std::string xxh3 = sp2 == std::string::npos ? "" : l.substr(sp1 + 1, sp2 - sp1 - 1);
    std::string nar_hash = sp2 == std::string::npos ? "" : l.substr(sp2 + 1);
    if (sp1 == 0 || xxh3.size() != 32 || xxh3.find_first_not_of("0123456789abcdef") != std::string::npos ||
        nar_hash.rfind("sha256:", 0) != 0 || nar_hash.find(' ') != std::string::npos ||
        !out.emplace(l.substr(0, sp1), NarChecksumLine{xxh3, nar_hash}).second)
      throw std::runtime_error(fmt::format("{} line {}: not \"URL XXH3 NARHASH\" (32 hex digits, sha256:..., each URL "
                                           "once)",
                                           kNarChecksumFile, line));
  }
  return out;
}

}  // namespace sprout
