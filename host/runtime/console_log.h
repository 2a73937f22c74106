// A bound on the guest console log that qemu appends to (`-chardev file,append=on`):
// a guest can print without end, the host's disk is not its to fill. When the file
// grows past `cap`, it is copied to NAME.1 (replacing the older one) and truncated;
// qemu's O_APPEND writes then continue at the new end. At most about 2 x cap stays on
// disk; a line written between the copy and the truncation can be lost. libvirt's
// console goes through virtlogd, which rotates on its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>

namespace sprout {

class ConsoleLogCap {
 public:
  using Clock = std::chrono::steady_clock;
  explicit ConsoleLogCap(std::filesystem::path path, std::uint64_t cap = 8u << 20,
                         std::chrono::milliseconds every = std::chrono::seconds(2))
      : path_(std::move(path)), cap_(cap), every_(every) {}

  /// Checks the size when a check is due; rotates when over the cap. Never throws.
  void tick();
  /// When the next check is due.
  Clock::time_point next_check() const { return next_; }
  std::uint64_t rotations() const { return rotations_; }

 private:
  std::filesystem::path path_;
  std::uint64_t cap_;
  std::chrono::milliseconds every_;
  Clock::time_point next_ = Clock::now();
  std::uint64_t rotations_ = 0;
};

}  // namespace sprout
