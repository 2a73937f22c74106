#!/usr/bin/env bash
# The export benchmark (issues 1 and 16) with its baselines, in one run: see
# bench/export_bench.py, which this runs. Usage: bench/export_bench.sh [SPROUT_BINARY] [RUNS]
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/export_bench.py" "${1:-$here/../build/host/sprout}" --runs "${2:-9}" "${@:3}"
