// Tests' helpers for file modes: a path's permission bits, and a umask for one scope.
#pragma once

#include <sys/stat.h>

#include <filesystem>

namespace sprout::testing {

/// The permission bits of `p` (07777), or ~0u when it cannot be stat'ed.
inline unsigned mode_of(const std::filesystem::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? st.st_mode & 07777 : ~0u;
}

/// Sets the process's umask until it goes out of scope.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  mode_t old_;
};

}  // namespace sprout::testing
