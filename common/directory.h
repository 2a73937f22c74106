// Making sure a directory exists, one way for host and guest: mkdir -p (mode 0777 less
// the umask), one stat() when the directory is already there (the agent's every boot
// but the first). Plain strings and an error code, no std::filesystem: the guest's
// code is built small.
#pragma once

#include <string>
#include <system_error>

namespace sprout {

/// ec: why not, e.g. not_a_directory when a file is in the way (also for an ancestor).
void ensure_directory(const std::string& dir, std::error_code& ec);

}  // namespace sprout
