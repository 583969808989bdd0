#!/usr/bin/env bash
# Playing the models never heard (docs/training.md section 21): the held-out procedural demo songs played as in
# training (`cocola synth --demo`) and the same songs - same key, tempo, chords and instruments - played in the
# held-out styles (`--playing unseen`: other drum grooves, bass lines, comping, arpeggios and lead rhythms), the K = 2
# accuracy of one or more models on both, and the paired change row by row. A proxy for human playing.
#
#   bash scripts/eval_unseen_playing.sh                        # the shipped default model
#   MODELS=a.safetensors,b.safetensors bash scripts/eval_unseen_playing.sh
#
# Environment: MODELS (comma-separated, default the shipped default model), DATA (where songs go, default data),
# OUT (report folder, default out/unseen-playing). Rendering is skipped for complete tracks, so a rerun is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
COCOLA=./build/cocola
DATA=${DATA:-data}
OUT=${OUT:-out/unseen-playing}
MODELS=${MODELS:-models/cocola_default.safetensors}
$COCOLA synth --demo -o "$DATA/demo"
$COCOLA synth --demo --playing unseen -o "$DATA/demo-unseen"
$COCOLA eval --models "$MODELS" --data "$DATA/demo,$DATA/demo-unseen" --split test --k 2 --rows "$OUT/rows.csv" -o "$OUT"
python3 scripts/paired_rows.py "$OUT/rows.csv" --across demo:demo-unseen
echo "unseen-playing: $OUT/eval.md"
