#!/bin/sh
# Runs one libFuzzer harness for a bounded time: new inputs go to a scratch directory
# (the seed corpus in the repository is only read), the crashing input, if any, is
# printed. Usage: run-fuzzer.sh HARNESS SEED_CORPUS [libFuzzer options...]
set -eu
harness=$1 seeds=$2
shift 2
work=$(mktemp -d "${TMPDIR:-/tmp}/sprout-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus" "$work/artifacts"
status=0
"$harness" -max_total_time="${FUZZ_SECONDS:-60}" -timeout=2 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" "$@" "$work/corpus" "$seeds" || status=$?
for f in "$work"/artifacts/*; do
  [ -e "$f" ] || continue
  echo "reproducer $f (base64):"
  base64 "$f"
done
exit $status
