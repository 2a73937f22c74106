#include "libvirt/libvirt_event_loop.h"

#include <chrono>
#include <mutex>
#include <thread>

#include "libvirt/libvirt_api.h"
#include "libvirt/libvirt_connection.h"

namespace sprout {

void start_libvirt_event_loop() {
  static std::once_flag once;
  std::call_once(once, [] {
    const LibvirtApi& lv = libvirt_api();
    if (lv.virEventRegisterDefaultImpl() != 0)
      throw LibvirtError("libvirt: cannot register its default event loop: " + libvirt_last_error());
    // Detached: it runs as long as the process; see the header for why that is safe.
    std::thread([&lv] {
      for (;;)  // one iteration each; after an error (-1), a pause rather than a spin
        if (lv.virEventRunDefaultImpl() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }).detach();
  });
}

}  // namespace sprout
