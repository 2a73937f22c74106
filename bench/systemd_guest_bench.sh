#!/usr/bin/env bash
# Measures the test guest with a real systemd (tests/vm/test_systemd_guest.py), the
# scenarios CI does not run, and what each step costs (times for docs/performance.md):
#   debootstrap   a fresh debootstrap of the root into an empty cache (skip: FRESH=0)
#   lifecycle     the CI case: two boots, the reboot from the agent's unit, SIGTERM
#   failing       a failing rebuild: sprout wait exits 1, systemctl says failed, SIGTERM
#   identity      the VM's host key across --rotate and a restart, and baseChange recreate
# Each case prints its own phase times (boot to rebuilding, to the answer, to
# specialized, SIGTERM to exit); this script adds each case's wall time.
# Usage: bench/systemd_guest_bench.sh [BUILD_DIR]     (as root: debootstrap)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
export SPROUT_AGENT=$build/guest/sprout-agent
sprout=$build/host/sprout
if [[ ${FRESH:-1} == 1 ]]; then
  cache=$(mktemp -d /var/tmp/sprout-bench-cache.XXXXXX)
  trap 'rm -rf "$cache"' EXIT
  start=$(date +%s.%N)
  "$here/../tests/vm/debootstrap-root.sh" "$cache" >/dev/null
  echo "debootstrap (fresh cache): $(echo "$(date +%s.%N) - $start" | bc) s"
  export SPROUT_TEST_CACHE=$cache
  # The kernel comes from the usual cache (fetch-kernel.sh is measured elsewhere).
  default_cache=${XDG_CACHE_HOME:-$HOME/.cache}/sprout-test
  for k in "$default_cache"/linux-image-*; do [[ -e $k ]] && ln -s "$k" "$cache/"; done
fi
for c in lifecycle failing identity; do
  start=$(date +%s.%N)
  python3 "$here/../tests/vm/test_systemd_guest.py" "$sprout" "$c"
  echo "$c: $(echo "$(date +%s.%N) - $start" | bc) s wall"
done
