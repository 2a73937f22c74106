#include "notify.h"

#include <cstdlib>

#if SPROUT_HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace sprout {

bool notify_enabled() {
#if SPROUT_HAVE_LIBSYSTEMD
  return std::getenv("NOTIFY_SOCKET") != nullptr;
#else
  return false;
#endif
}

namespace {
void send(const std::string& text) {
#if SPROUT_HAVE_LIBSYSTEMD
  if (notify_enabled()) sd_notify(0, text.c_str());
#else
  (void)text;
#endif
}
std::string one_line(std::string s) {
  for (auto& c : s)
    if (c == '\n') c = ' ';
  return s;
}
}  // namespace

void notify_status(const std::string& status) { send("STATUS=" + one_line(status)); }
void notify_ready(const std::string& status) { send("READY=1\nSTATUS=" + one_line(status)); }
void notify_stopping() { send("STOPPING=1"); }

}  // namespace sprout
