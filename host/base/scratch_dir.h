// A private scratch directory, `PARENT/.staging-PID-XXXXXX` (mode 0700), removed with
// everything in it when it goes out of scope, read-only subdirectories included. The
// name carries the pid, so a killed sprout's scratch is a leftover gc and the next
// export remove (leftovers.h).
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

#include <fmt/format.h>

#include "base/leftovers.h"

namespace sprout {

struct ScratchDir {
  std::filesystem::path path;
  explicit ScratchDir(const std::filesystem::path& parent) {
    std::string tmpl = (parent / fmt::format(".staging-{}-XXXXXX", ::getpid())).string();
    if (!::mkdtemp(tmpl.data())) throw std::system_error(errno, std::generic_category(), "mkdtemp " + tmpl);
    path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    remove_tree(path, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
};

}  // namespace sprout
