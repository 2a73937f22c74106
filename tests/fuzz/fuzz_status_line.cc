// What a guest writes on its status channel, as the host reads it: the decoder, the
// recorder (line splitting, bounds, status.json and events.jsonl in a scratch
// directory), and the terminal escaping of everything it may print.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "status_protocol.h"
#include "status/status_recorder.h"
#include "status/status_store.h"
#include "base/terminal_text.h"

namespace {

std::filesystem::path scratch() {
  static std::filesystem::path dir = [] {
    std::string tmpl = std::filesystem::temp_directory_path() / "sprout-fuzz-status-XXXXXX";
    if (!::mkdtemp(tmpl.data())) std::abort();
    spdlog::set_level(spdlog::level::off);
    return std::filesystem::path(tmpl);
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto d = sprout::decode_status_line(bytes);
  if (d.event) {
    auto j = sprout::status_event_to_json(*d.event);
    (void)j.dump();
  }
  (void)sprout::for_terminal(bytes);
  sprout::StatusStore store(scratch());
  sprout::StatusRecorder rec("fuzz", store);
  rec.on_connect();
  rec.on_data(bytes);
  rec.on_data("\n");
  rec.on_disconnect();
  rec.flush();
  return 0;
}
