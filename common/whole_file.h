// One small file read whole and exactly: opened without following a final symlink,
// read to its end, refused beyond a bound. What the host reads of a VM's identity and
// what the guest reads of its secrets disk and closure disk.
#pragma once

#include <cstddef>
#include <string>

namespace sprout {

struct WholeFile {
  std::string text;
  int error = 0;           ///< errno of the open or read that failed
  bool too_large = false;  ///< over the bound (text holds a prefix)
  explicit operator bool() const { return error == 0 && !too_large; }
  /// "No such file or directory", "larger than N bytes" (for a failed read).
  std::string why(std::size_t max_bytes) const;
};

WholeFile read_whole_file(const std::string& path, std::size_t max_bytes);

}  // namespace sprout
