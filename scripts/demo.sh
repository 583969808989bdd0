#!/usr/bin/env bash
# The main job on built-in data: features of the example clips and COCOLA scores of pairs of them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${OUT:-out/demo}
mkdir -p "$OUT"
CLIPS=tests/data/golden/inputs
echo "== features of the example clips (hpss and mel) -> $OUT/features"
./build/cocola features --frontend hpss -o "$OUT/features/hpss" "$CLIPS"/*.wav
./build/cocola features --frontend mel -o "$OUT/features/mel" "$CLIPS"/*.wav
ls "$OUT/features/hpss"
# No trained default model ships yet: the golden parity weights (random init + BatchNorm warm-up) stand in,
# so the numbers show the pipeline, not musical judgement.
MODEL=tests/data/golden/models/cocola_hpss_seed0.safetensors
echo "== COCOLA scores with $MODEL"
./build/cocola score -m "$MODEL" --matrix --cond-dir "$CLIPS" --acc-dir "$CLIPS" --csv --output "$OUT/score_matrix.csv"
./build/cocola score -m "$MODEL" "$CLIPS/03_triad_drums_mix.wav" "$CLIPS/02_bass.wav"
echo "wrote $OUT/features/ and $OUT/score_matrix.csv"
