#include "spec/state_dir.h"

#include <algorithm>
#include <system_error>

namespace sprout {

std::vector<std::filesystem::path> StateDir::overlays() const {
  std::vector<std::filesystem::path> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
    const std::string n = e.path().filename().string();
    if (n == overlay().filename() || is_overlay_aside(n)) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace sprout
