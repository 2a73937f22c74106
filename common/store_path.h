// Nix store paths as sprout accepts them from a spec (host) and a manifest (guest):
// `/nix/store/HASH-NAME` with HASH 32 characters of Nix's base-32 alphabet and NAME
// 1-211 bytes of `A-Z a-z 0-9 + - . _ ? =` not starting with `.`; nothing below it.
#pragma once

#include <string>
#include <string_view>

namespace sprout {

inline constexpr std::string_view kNixStoreDir = "/nix/store";

/// "" when `path` is a store path as above, else what is wrong with it.
std::string store_path_problem(std::string_view path);

/// The HASH part of a valid store path (what names its narinfo in a binary cache).
std::string_view store_path_hash(std::string_view path);

}  // namespace sprout
