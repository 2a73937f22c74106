// SHA-256 through OpenSSL's libcrypto (EVP), as a small RAII hasher.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

struct evp_md_ctx_st;

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
  evp_md_ctx_st* ctx_;
};

std::string sha256_hex(std::string_view data);
std::string to_hex(const std::uint8_t* data, std::size_t size);

}  // namespace sprout
