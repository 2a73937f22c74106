#!/usr/bin/env bash
# Checks the syntax of every .nix file in the repository: nix-instantiate --parse.
# Usage: parse-all.sh NIX_INSTANTIATE REPO_ROOT
set -u
nix=$1 root=$2
export NIX_CONFIG="build-users-group ="
failed=0 count=0
while IFS= read -r -d '' f; do
  count=$((count + 1))
  if ! out=$("$nix" --parse "$f" 2>&1 >/dev/null); then
    echo "FAIL $f"; echo "$out"; failed=$((failed + 1))
  fi
done < <(find "$root" -name '*.nix' -not -path '*/.git/*' -not -path '*/build*/*' -not -path '*/subprojects/*' -print0)
# nixpkgs renamed pkgs.system to pkgs.stdenv.hostPlatform.system.
if grep -rnE '\bpkgs\.system\b' "$root/nixos" "$root/flake.nix" "$root/examples"; then
  echo "FAIL pkgs.system is deprecated in nixpkgs: use pkgs.stdenv.hostPlatform.system"; failed=$((failed + 1))
fi
echo "$count files parsed, $failed failed"
((count > 0 && failed == 0))
