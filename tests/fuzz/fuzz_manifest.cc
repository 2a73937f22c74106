// The manifest on the self disk, as the guest's agent parses it at boot.
#include <cstdint>
#include <string_view>

#include "error.h"
#include "manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)sprout::parse_manifest(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  } catch (const sprout::InputError&) {
  }
  return 0;
}
