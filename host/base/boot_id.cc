#include "base/boot_id.h"

#include <fstream>

namespace sprout {

std::string host_boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

}  // namespace sprout
