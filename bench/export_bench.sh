#!/usr/bin/env bash
# Benchmark for `sprout export` (issue: foundation). On a generated tree of 10,000
# files / 100 MB it measures, in the same run and on the same tree:
#   A  mkfs.ext4 -d alone (same size, features and options sprout uses)
#   B  a fresh `sprout export` of one role (empty image and digest caches)
#   C  an unchanged re-export (everything cached)
# and prints the medians and the ratios B/A (target <= 1.3) and C/B (target <= 0.10).
# Usage: bench/export_bench.sh [SPROUT_BINARY] [RUNS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sprout=${1:-$here/../build/host/sprout}
runs=${2:-5}
work=$(mktemp -d /var/tmp/sprout-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

python3 "$here/gen_tree.py" "$work/tree" 10000 100
mkdir -p "$work/self" && echo '{ ... }: { }' > "$work/self/configuration.nix"
# Old timestamps, as a config tree in the Nix store or a checkout has (fresh files are
# never trusted by the digest cache).
find "$work/tree" "$work/self" -exec touch -h -d '2 hours ago' {} +
sync

# The exact mkfs.ext4 command sprout runs, taken from one export's trace.
"$sprout" --log-level warn export --name bench --config "$work/tree" --self "$work/self" \
  --out "$work/probe" --json > "$work/probe.json"
size_k=$(( $(stat -c %s "$(readlink -f "$work/probe/config.img")") / 1024 ))
inodes=$(( $(find "$work/tree" | wc -l) + 63 ))
export_cmd="$sprout --log-level warn export --name bench --config $work/tree --self $work/self --out $work/out"

# hyperfine times each command (subtracting its own shell's start-up where a shell is
# used); --prepare runs untimed before each run.
hyperfine --style basic --runs "$runs" --export-json "$work/a.json" \
  --prepare "rm -f $work/mkfs.img; sync" \
  "E2FSPROGS_FAKE_TIME=1 mkfs.ext4 -q -F -T default -O ^has_journal -b 4096 -I 256 -N $inodes -m 0 \
    -L sprout-config -U 01234567-89ab-4def-8123-456789abcdef \
    -E root_owner=0:0,hash_seed=01234567-89ab-4def-8123-456789abcdef,nodiscard \
    -d $work/tree $work/mkfs.img ${size_k}k >/dev/null 2>&1 && sync -f $work/mkfs.img" >/dev/null
# (sync -f: sprout's image is fsync'ed before it is renamed into place)
hyperfine --style basic --runs "$runs" --export-json "$work/b.json" \
  --prepare "rm -rf $work/out; sync" "$export_cmd" >/dev/null
# Unchanged: the first (warm-up) run after B fills nothing new; every timed run is a re-export.
hyperfine --style basic -N --warmup 1 --runs "$((runs * 3))" --export-json "$work/c.json" "$export_cmd" >/dev/null

python3 - "$work" "$runs" "$(du -sm "$work/tree" | cut -f1)" <<'PY'
import json, statistics, sys
work, runs, mb = sys.argv[1], sys.argv[2], sys.argv[3]
t = {k: json.load(open(f"{work}/{k.lower()}.json"))["results"][0]["times"] for k in "ABC"}
m = {k: statistics.median(v) for k, v in t.items()}
print(f"tree: 10,000 files, {mb} MB; medians (hyperfine; {runs} runs for A and B, {len(t['C'])} for C):")
names = {"A": "mkfs.ext4 -d alone", "B": "fresh sprout export", "C": "unchanged re-export"}
for k in "ABC":
    print(f"  {k} {names[k] + ':':<26} {m[k]:6.3f} s   (min {min(t[k]):.3f}, max {max(t[k]):.3f})")
print(f"  B/A = {m['B'] / m['A']:.2f} (target <= 1.30)   C/B = {m['C'] / m['B']:.3f} (target <= 0.10)")
PY
