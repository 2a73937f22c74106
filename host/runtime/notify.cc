#include "runtime/notify.h"

#include <cstdlib>
#include <mutex>

#if SPROUT_HAVE_LIBSYSTEMD
#include <dlfcn.h>

#include <spdlog/spdlog.h>
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

#if SPROUT_HAVE_LIBSYSTEMD
/// libsystemd's sd_notify, loaded the first time a notification is sent: only a
/// `sprout run` under systemd needs it, and libsystemd brings six more libraries
/// that every other command would load for nothing (docs/performance.md).
decltype(&sd_notify) sd_notify_function() {
  static decltype(&sd_notify) fn = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = ::dlopen(SPROUT_LIBSYSTEMD_SO, RTLD_NOW | RTLD_LOCAL);
    if (lib) fn = reinterpret_cast<decltype(&sd_notify)>(::dlsym(lib, "sd_notify"));
    if (!fn) spdlog::warn("cannot load libsystemd ({}): no readiness notifications to systemd", ::dlerror());
  });
  return fn;
}
#endif

void send(const std::string& text) {
#if SPROUT_HAVE_LIBSYSTEMD
  if (!notify_enabled()) return;
  if (auto fn = sd_notify_function()) fn(0, text.c_str());
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
