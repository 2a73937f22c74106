// A VM spec, as `sprout check-spec` and every command parse it.
#include <cstdint>
#include <string_view>

#include "error.h"
#include "spec/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)sprout::parse_spec(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json", "/etc/sprout/vms");
  } catch (const sprout::InputError&) {
  }
  return 0;
}
