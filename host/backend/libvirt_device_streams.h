// A libvirt domain's status channel and serial console as the runtime and the
// commands use them (runtime/channel_source.h, backend.h's ConsoleSession), read
// through libvirt's API (libvirt/libvirt_stream.h): libvirtd opens the device on the
// domain's host, local or remote; nothing here opens a path on this host.
#pragma once

#include <memory>
#include <string>

#include "backend/backend.h"
#include "runtime/channel_source.h"

namespace sprout {

/// The domain's virtio channel sprout.status.0 (common/status_protocol.h). Each
/// open() is a new connection to `uri`; retried at most every 2 s. A run whose channel
/// ended is not opened again for 30 s: libvirt may still show its domain active while
/// it stops it, and would hand out a stream that ends at once (a run that never was).
/// After that, the same run identity is taken for a new run (channel_source.h).
std::unique_ptr<ChannelSource> libvirt_status_channel(std::string uri, std::string domain);

/// The domain's first console, attached now. Throws std::runtime_error naming the
/// domain and what to do when it does not run or another session has it.
std::unique_ptr<ConsoleSession> libvirt_console(const std::string& uri, const std::string& domain);

}  // namespace sprout
