// Importing a host-built closure into the guest's Nix store: what
// `sprout-agent --import-closure DIR SYSTEM` does (host-built VMs, docs/agent.md), in
// one pass over the closure disk instead of `nix copy --from file://DIR`:
//   1. walks SYSTEM's closure through DIR's narinfos (the uncompressed binary cache
//      the host writes: nix-cache-info, HASH.narinfo, nar/), read from their index
//      (sprout-narinfos, common/narinfo_index.h) where the disk has one;
//   2. holding Nix's garbage-collector lock shared for the rest of the import (no
//      collection runs meanwhile), finds which of those paths the store lacks: one
//      with nothing at its place is not valid; one that is there and has no NAR on the
//      disk (the base's) is taken as valid, which the registration in step 5 proves
//      (Nix refuses a reference to a path that is not valid; nothing is registered
//      then, and what was unpacked is removed); the guest's Nix is asked about the
//      others (`nix-store --check-validity --print-invalid`: none on a fresh import).
//      The disk must hold a NAR for each path the store lacks (and the NarHash of its
//      checksum line must be its narinfo's), or nothing is written;
//   3. locks each of those paths as Nix does (PATH.lock) and asks again about any
//      that appeared meanwhile;
//   4. on a read-only store mount (NixOS), remounts it writable in a mount namespace of
//      its own, as Nix does; unpacks each NAR into the store (nar_restore.h), hashing it as
//      it is read; an invalid leftover of the same path is replaced. A NAR whose
//      size or digest is not the recorded one ends the import: everything it wrote is
//      removed, nothing is registered. The digest is the host's XXH3-128 of the NAR
//      where the disk lists it (`sprout-nar-xxh3`, common/nar_checksum.h: computed
//      from the bytes the host checked against its Nix database's SHA-256), else the
//      narinfo's NarHash (SHA-256);
//   5. syncfs, then registers every path in one transaction of the guest's Nix
//      (`nix-store --load-db`: path, NAR hash, size, deriver, references).
// Progress goes to `on_line` as Nix words it ("copying path '...' from 'file://...'").
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace sprout::agent {

struct ClosureImport {
  std::string root = "/";    ///< prefixes every guest path (unit tests)
  std::string closure_dir;   ///< the mounted closure disk (guest path)
  std::string system;        ///< the store path whose closure is imported
  std::string nix_bin_dir;   ///< where nix-store is; "" = PATH
  std::function<void(std::string_view)> on_line;
};

struct ImportOutcome {
  bool ok = false;
  std::vector<std::string> error;  ///< why not, one line each (the first says what failed)
  std::size_t walked = 0;          ///< paths in the closure
  std::size_t imported = 0;        ///< paths that were not valid and are now
  std::uint64_t nar_bytes = 0;
  std::size_t checked_xxh3 = 0, checked_sha256 = 0;  ///< how each NAR was checked
};

ImportOutcome import_closure(const ClosureImport& run);

/// One narinfo of the closure disk, as the import reads it.
struct NarInfo {
  std::string store_path;
  std::string url;         ///< relative to the cache: "nar/....nar"
  std::string nar_hash;    ///< "sha256:" + hex or Nix base 32
  std::uint64_t nar_size = 0;
  std::string deriver;     ///< full store path, or ""
  std::vector<std::string> references;  ///< full store paths
};

/// Parses a narinfo's text; std::runtime_error naming the field that is missing or
/// wrong (uncompressed NARs only; `expected` is the path it must describe).
NarInfo parse_narinfo(const std::string& text, const std::string& expected);

}  // namespace sprout::agent
