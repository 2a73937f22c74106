// The closure disk's NAR checksums (host-built VMs): XXH3-128 of each NAR, computed by
// the host from the very bytes it wrote into the image and checked against the NAR
// hash (SHA-256) its Nix database records; checked by the guest as it unpacks each
// NAR. Under emulation SHA-256 costs the guest more than copying the NAR (issue 25,
// docs/performance.md); XXH3 detects damage as surely for a fraction of that. It is
// not a defence against forgery, which the guest has none of anyway: whoever can
// write the disk image owns the VM (docs/security.md).
// The file, `sprout-nar-xxh3` at the top of the disk: one line a NAR,
// "URL XXH3 NARHASH\n": URL as in the narinfo ("nar/NAME.nar"), XXH3 the 32-digit
// canonical XXH3-128, NARHASH the narinfo's NarHash, which the host checked those bytes
// against and the guest registers: a narinfo whose NarHash was damaged disagrees.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <string>

namespace sprout {

inline constexpr const char* kNarChecksumFile = "sprout-nar-xxh3";

/// XXH3-128 of a byte stream, fed in chunks.
class NarChecksum {
 public:
  NarChecksum();
  ~NarChecksum();
  NarChecksum(const NarChecksum&) = delete;
  NarChecksum& operator=(const NarChecksum&) = delete;
  void update(const void* data, std::size_t size);
  std::string hex() const;  ///< 32 hex digits, canonical (big-endian) form

 private:
  struct State;
  std::unique_ptr<State> state_;
};

struct NarChecksumLine {
  std::string xxh3;      ///< 32 hex digits
  std::string nar_hash;  ///< "sha256:..." as in the narinfo
};

/// Parses the file's text: URL -> line. std::runtime_error naming a bad line.
std::map<std::string, NarChecksumLine> parse_nar_checksums(const std::string& text);

}  // namespace sprout
