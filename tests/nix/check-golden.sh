#!/usr/bin/env bash
# Runs `sprout check-spec` on every golden spec: what the NixOS module writes must
# be what sprout accepts. Usage: check-golden.sh SPROUT GOLDEN.json...
set -u
sprout=$1; shift
if [[ ! -x $sprout ]]; then echo "no sprout binary at $sprout"; exit 1; fi
failed=0
for f in "$@"; do
  # (--no-files: as the module runs it, in a build sandbox without the files named.)
  if out=$("$sprout" check-spec --no-files "$f" 2>&1); then
    echo "ok    $f"
  else
    echo "FAIL  $f"; echo "$out"; failed=$((failed + 1))
  fi
done
((failed == 0))
