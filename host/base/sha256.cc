#include "base/sha256.h"

#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>
#include <memory>

// SHA256_Init and friends are deprecated in OpenSSL 3 in favour of EVP, which costs
// the start-up described below; they remain part of libcrypto 3.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

namespace sprout {

namespace {
constexpr std::size_t kReadChunk = 256 << 10;
}  // namespace

// libcrypto's SHA-256 functions themselves, not EVP: EVP first fetches the algorithm
// from a provider, and in OpenSSL 3 the first fetch initialises the library (reads
// openssl.cnf, builds its name tables): 2-3 ms of every sprout command, more than the
// hashing an unchanged export does (docs/performance.md). Same code, same SHA-NI.
Sha256::Sha256() : ctx_(new SHA256_CTX) {
  if (SHA256_Init(ctx_) != 1) {
    delete ctx_;
    throw std::runtime_error("libcrypto: cannot initialise SHA-256");
  }
}

Sha256::~Sha256() { delete ctx_; }

void Sha256::update(const void* data, std::size_t size) {
  if (SHA256_Update(ctx_, data, size) != 1) throw std::runtime_error("libcrypto: SHA-256 update failed");
}

std::array<std::uint8_t, 32> Sha256::finish() {
  std::array<std::uint8_t, 32> out{};
  if (SHA256_Final(out.data(), ctx_) != 1) throw std::runtime_error("libcrypto: SHA-256 final failed");
  return out;
}

std::string Sha256::finish_hex() {
  auto d = finish();
  return to_hex(d.data(), d.size());
}

std::string to_hex(const std::uint8_t* data, std::size_t size) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(size * 2, '0');
  for (std::size_t i = 0; i < size; ++i) {
    s[2 * i] = kHex[data[i] >> 4];
    s[2 * i + 1] = kHex[data[i] & 15];
  }
  return s;
}

std::string sha256_hex(std::string_view data) {
  Sha256 h;
  h.update(data);
  return h.finish_hex();
}

std::uint64_t read_hashing(int fd, Sha256& h, std::uint64_t limit, const std::string& what,
                           const std::function<void(const char*, std::size_t)>& sink) {
  // Not zeroed (new char[], not a vector): only the pages a read fills are touched,
  // one for a small file.
  static thread_local std::unique_ptr<char[]> buf(new char[kReadChunk]);
  std::uint64_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf.get(), kReadChunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::system_error(errno, std::generic_category(), what);
    }
    if (n == 0) return total;
    total += static_cast<std::uint64_t>(n);
    if (total > limit) return total;
    h.update(buf.get(), static_cast<std::size_t>(n));
    if (sink) sink(buf.get(), static_cast<std::size_t>(n));
  }
}

}  // namespace sprout
