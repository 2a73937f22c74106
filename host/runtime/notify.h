// systemd readiness and status notifications (sd_notify) when NOTIFY_SOCKET is set;
// a no-op otherwise or when sprout was built without libsystemd. libsystemd is loaded
// (dlopen) on the first notification only.
#pragma once

#include <string>

namespace sprout {

bool notify_enabled();
void notify_status(const std::string& status);
void notify_ready(const std::string& status);
void notify_stopping();

}  // namespace sprout
