#!/usr/bin/env bash
# Throughput of data-parallel training against one process, in the same run on the same data:
#   one process with all cores, then --processes P with cores/P threads each (the same global batch).
# Prints the median step time of each (the first two steps left out: warm-up) and the ratio.
#   bench/bench_distributed.sh [DATA] [BATCH] [STEPS] [PROCESSES]
# DATA: a dataset root or cache (default data/demo, made by `cocola synth --demo -o data/demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data/demo}
BATCH=${2:-32}
STEPS=${3:-8}
PROCESSES=${4:-2}
COCOLA=${COCOLA:-./build/cocola}
[[ -e $DATA ]] || { echo "bench_distributed: $DATA does not exist (make it with: $COCOLA synth --demo -o data/demo)" >&2; exit 1; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

median_step() {  # median step_seconds of log.csv rows 3.. (column 7)
  tail -n +4 "$1/log.csv" | cut -d, -f7 | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'
}

flags=(--data "$DATA" --batch "$BATCH" --steps "$STEPS" --val-every 0 --checkpoint-every 1000 --seed 1)
echo "bench_distributed: $(nproc) cores, batch $BATCH, $STEPS steps, data $DATA"
"$COCOLA" train "${flags[@]}" -o "$OUT/one" >/dev/null 2>&1
one=$(median_step "$OUT/one")
"$COCOLA" train --processes "$PROCESSES" "${flags[@]}" -o "$OUT/many" >/dev/null 2>&1
many=$(median_step "$OUT/many")
awk -v one="$one" -v many="$many" -v p="$PROCESSES" -v b="$BATCH" 'BEGIN {
  printf "1 process, all cores:          %.3f s/step (%.1f windows/s)\n", one, 2 * b / one
  printf "%d processes, cores/%d each:    %.3f s/step (%.1f windows/s)\n", p, p, many, 2 * b / many
  printf "speed-up: %.2fx\n", one / many
}'
