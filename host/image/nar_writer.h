// A store path serialised as a NAR (Nix ARchive), byte for byte what `nix-store --dump`
// writes, read straight from the filesystem in one pass (no Nix process): regular
// files (executable when the owner may run them), symlinks and directories (entries
// in byte order of their names); anything else is refused. The bytes go to a sink in
// chunks of any size, hashed (SHA-256) on the way, so the caller can check exactly
// what it wrote against the NAR hash Nix's database records for the path: a path
// changed or corrupted since Nix registered it, or changed while being read, gives
// another hash.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace sprout {

using NarSink = std::function<void(const char* data, std::size_t size)>;

struct NarDump {
  std::uint64_t size = 0;  ///< bytes handed to the sink
  std::string sha256_hex;  ///< of those bytes
};

/// Serialises `path` (a file, symlink or directory; not followed if a symlink) to
/// `sink`. std::system_error naming the file when one cannot be read;
/// std::runtime_error for a file type a NAR cannot hold or a file that changed size
/// while being read.
NarDump write_nar(const std::string& path, const NarSink& sink);

}  // namespace sprout
