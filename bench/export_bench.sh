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

now() { date +%s.%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# The exact mkfs.ext4 command sprout runs, taken from one export's trace.
"$sprout" --log-level warn export --name bench --config "$work/tree" --self "$work/self" \
  --out "$work/probe" --json > "$work/probe.json"
size_k=$(( $(stat -c %s "$(readlink -f "$work/probe/config.img")") / 1024 ))
inodes=$(( $(find "$work/tree" | wc -l) + 63 ))

declare -a A B C
for i in $(seq "$runs"); do
  rm -f "$work/mkfs.img"; sync
  t0=$(now)
  E2FSPROGS_FAKE_TIME=1 mkfs.ext4 -q -F -T default -O ^has_journal -b 4096 -I 256 -N "$inodes" -m 0 \
    -L sprout-config -U 01234567-89ab-4def-8123-456789abcdef \
    -E root_owner=0:0,hash_seed=01234567-89ab-4def-8123-456789abcdef,nodiscard \
    -d "$work/tree" "$work/mkfs.img" "${size_k}k" >/dev/null 2>&1
  sync -f "$work/mkfs.img"  # sprout's image is fsync'ed before it is renamed into place
  A+=("$(echo "$(now) - $t0" | bc)")

  rm -rf "$work/out"; sync
  t0=$(now)
  "$sprout" --log-level warn export --name bench --config "$work/tree" --self "$work/self" --out "$work/out" >/dev/null
  B+=("$(echo "$(now) - $t0" | bc)")

  t0=$(now)
  "$sprout" --log-level warn export --name bench --config "$work/tree" --self "$work/self" --out "$work/out" >/dev/null
  C+=("$(echo "$(now) - $t0" | bc)")
done

a=$(printf '%s\n' "${A[@]}" | median)
b=$(printf '%s\n' "${B[@]}" | median)
c=$(printf '%s\n' "${C[@]}" | median)
echo "tree: 10,000 files, $(du -sm "$work/tree" | cut -f1) MB; $runs runs each; medians:"
printf '  A mkfs.ext4 -d alone:        %6.3f s   (%s)\n' "$a" "${A[*]}"
printf '  B fresh sprout export:       %6.3f s   (%s)\n' "$b" "${B[*]}"
printf '  C unchanged re-export:       %6.3f s   (%s)\n' "$c" "${C[*]}"
printf '  B/A = %.2f (target <= 1.30)   C/B = %.3f (target <= 0.10)\n' "$(echo "$b / $a" | bc -l)" "$(echo "$c / $b" | bc -l)"
