#!/bin/sh
# Runs one libFuzzer harness for a bounded time: new inputs go to a scratch directory
# (the seed corpus in the repository is only read), the crashing input, if any, is
# printed. Usage: run-fuzzer.sh HARNESS SEED_CORPUS [libFuzzer options...]
#
# -max_len: libFuzzer's default is the longest seed (a few KiB here), which no
# nesting deep enough to exhaust a stack fits in: 100,000 nested lists crashed every
# reader until the JSON depth limit (common/strict_json.h), and no fuzzer could make
# them. So inputs may be 1 MiB, and the scratch corpus starts with two such seeds,
# lists and objects 100,000 deep (made here rather than kept in the repository).
set -eu
harness=$1 seeds=$2
shift 2
work=$(mktemp -d "${TMPDIR:-/tmp}/sprout-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/corpus" "$work/artifacts"
awk 'BEGIN { for (i = 0; i < 100000; i++) printf "["; for (i = 0; i < 100000; i++) printf "]" }' \
  > "$work/corpus/deep-lists"
awk 'BEGIN { for (i = 0; i < 100000; i++) printf "{\"a\":"; printf "1"; for (i = 0; i < 100000; i++) printf "}" }' \
  > "$work/corpus/deep-objects"
status=0
"$harness" -max_total_time="${FUZZ_SECONDS:-20}" -timeout=2 -rss_limit_mb=2048 -max_len=1048576 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$@" "$work/corpus" "$seeds" || status=$?
for f in "$work"/artifacts/*; do
  [ -e "$f" ] || continue
  echo "reproducer $f (base64):"
  base64 "$f"
done
exit $status
