#!/bin/sh
# The guest's static libraries hold fat LTO objects: machine code besides the LTO IR.
# A slim object (GCC marks it with the symbol __gnu_lto_slim) has no code a plain
# `ar` can index without the LTO plugin, which is how nixpkgs builds (AR=ar): the
# agent's link would then fail there. readelf reads archives without any plugin.
# Usage: lto_archives_test.sh ARCHIVE...
set -eu
status=0
for a in "$@"; do
  slim=$(readelf -s --wide "$a" | grep -c '__gnu_lto_slim' || true)
  if [ "$slim" != 0 ]; then
    echo "FAIL  $a: $slim slim LTO objects (build them with -ffat-lto-objects)"
    status=1
  else
    echo "ok    $a: no slim LTO objects"
  fi
done
exit $status
