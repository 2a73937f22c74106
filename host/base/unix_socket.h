// Small helpers around unix stream sockets and signal descriptors for the runtime's
// poll loops.
#pragma once

#include <signal.h>

#include <filesystem>
#include <string>

namespace sprout {

/// Connects to a unix stream socket; returns a non-blocking, close-on-exec fd or -1
/// (errno set). Never blocks: connecting to a unix socket completes or fails at once.
int connect_unix(const std::filesystem::path& path);

/// Reads what is available without blocking into `out` (appending up to max bytes).
/// Returns >0 bytes read, 0 on EOF, -1 when nothing is there (EAGAIN), -2 on error.
long read_some(int fd, std::string& out, std::size_t max = 65536);

/// Blocks SIGTERM, SIGINT, SIGHUP (and SIGCHLD when with_child) and returns a
/// signalfd for them (close-on-exec, non-blocking). `old` receives the previous mask.
int make_signal_fd(bool with_child, sigset_t* old);

}  // namespace sprout
