// Sizes with units, as our users write them in the libvirt module (memory) and for
// qemu-img (disk sizes). Parsing is exact: an unknown unit or an overflow is an error.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace sprout {

/// Bytes per memory unit, libvirt's list: b, bytes, KB, k, KiB, MB, M, MiB, GB, G, GiB,
/// TB, T, TiB (KB, MB, GB, TB are powers of 1000; the others of 1024). nullopt if unknown.
std::optional<std::uint64_t> memory_unit_bytes(std::string_view unit);

/// Bytes per qemu-img size unit: K, M, G, T (powers of 1024). nullopt if unknown.
std::optional<std::uint64_t> disk_unit_bytes(std::string_view unit);

/// amount * unit_bytes, or nullopt on overflow.
std::optional<std::uint64_t> checked_multiply(std::uint64_t amount, std::uint64_t unit_bytes);

}  // namespace sprout
