#include "image/cache_lock.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace sprout {

CacheLock::CacheLock(const std::filesystem::path& cache_dir, Mode mode, std::chrono::milliseconds timeout)
    : lock_(cache_dir / ".lock", mode == shared ? FileLock::shared : FileLock::exclusive, timeout,
            fmt::format("{}: the image cache stayed busy (another sprout export or gc) for {} s; try again",
                        cache_dir.string(), timeout.count() / 1000),
            [&] { spdlog::info("waiting for another sprout export or gc to finish with {}", cache_dir.string()); }) {}

}  // namespace sprout
