// SHA-256 through OpenSSL's libcrypto (its SHA256_* functions), as a small RAII hasher.
#pragma once

#include <array>
#include <functional>
#include <cstdint>
#include <string>
#include <string_view>

struct SHA256state_st;

namespace sprout {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, std::size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  /// Finishes the hash; the hasher must not be used afterwards.
  std::array<std::uint8_t, 32> finish();
  std::string finish_hex();

 private:
  SHA256state_st* ctx_;
};

std::string sha256_hex(std::string_view data);

/// Reads `fd` to its end, hashing every byte and handing each chunk to `sink` (if
/// any), and returns how many bytes there were; stops early, returning more than
/// `limit`, once more than `limit` bytes came (a file that grew while it was read).
/// std::system_error naming `what` on a read error.
std::uint64_t read_hashing(int fd, Sha256& h, std::uint64_t limit, const std::string& what,
                           const std::function<void(const char*, std::size_t)>& sink = {});
std::string to_hex(const std::uint8_t* data, std::size_t size);

}  // namespace sprout
