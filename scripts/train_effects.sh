#!/usr/bin/env bash
# Issue 23, the effects lever: fine-tunes the shipped default model on its own training songs plus the same songs
# through random production effects (`cocola synth --effects random`), beside a control fine-tuned identically on
# the dry songs alone, then evaluates both and the default on the dry and effects test sets and the
# cross-SoundFont sets (docs/training.md section 17). Resumable: run it again after an interruption.
#
#   bash scripts/train_effects.sh                 # STEPS=300 each, both runs side by side (one thread each)
#   STEPS=900 bash scripts/train_effects.sh       # continue both runs to 900 steps
#
# Environment: STEPS (default 300), DATA (default data), RUNS (default runs), OUT (default out/effects),
# EVAL=0 to train only.
set -euo pipefail
cd "$(dirname "$0")/.."
COCOLA=./build/cocola
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
OUT=${OUT:-out/effects}
STEPS=${STEPS:-300}
MIDI=/usr/share/games/openttd/baseset/openmsx
bash scripts/setup.sh

# The default model's training songs (models/README.md), dry and through effects; the test songs likewise.
$COCOLA synth --tracks 1200 --seed 1 -o "$DATA/procedural-1200"
$COCOLA synth --tracks 1200 --seed 1 --effects random -o "$DATA/procedural-1200-fx"
$COCOLA synth --midi "$MIDI" -o "$DATA/openmsx"
$COCOLA synth --midi "$MIDI" --effects random -o "$DATA/openmsx-fx"
$COCOLA synth --demo -o "$DATA/demo"
$COCOLA synth --demo --effects random -o "$DATA/demo-fx"

# Stage 2 of the default recipe, shorter and at a third of its rate, from the shipped weights.
common=(--frontend hpss --batch 32 --lr 1e-4 --warmup 20 --lr-decay cosine --similarity-lr 1e-5
        --similarity-init-std 0.01 --loss symmetric --no-channel-masks --noise 0 --val-every 150 --val-batches 8
        --checkpoint-every 25 --seed 7 --aux-labels 3 --windows-per-track 2 --init models/cocola_default.safetensors)
run() {  # run NAME DATA...
  local name=$1 data=$2
  if [[ -f $RUNS/$name/checkpoint.safetensors ]]; then
    $COCOLA --threads 1 train --resume "$RUNS/$name" --steps "$STEPS"
  else
    $COCOLA --threads 1 train --data "$data" -o "$RUNS/$name" --steps "$STEPS" "${common[@]}"
  fi
}
mkdir -p "$RUNS"
run effects-dry "$DATA/procedural-1200,$DATA/openmsx" > "$RUNS/effects-dry.log" 2>&1 &
dry=$!
run effects-fx "$DATA/procedural-1200,$DATA/procedural-1200-fx,$DATA/openmsx,$DATA/openmsx-fx" > "$RUNS/effects-fx.log" 2>&1 &
fx=$!
wait $dry || { echo "train_effects: the dry run failed, see $RUNS/effects-dry.log" >&2; exit 1; }
wait $fx || { echo "train_effects: the effects run failed, see $RUNS/effects-fx.log" >&2; exit 1; }
echo "train_effects: trained to $STEPS steps ($RUNS/effects-dry, $RUNS/effects-fx; logs $RUNS/effects-*.log)"

if [[ ${EVAL:-1} != 0 ]]; then
  mkdir -p "$OUT"
  sets="$DATA/demo,$DATA/demo-fx,$DATA/openmsx,$DATA/openmsx-fx"
  for s in demo-fluid demo-musescore openmsx-fluid openmsx-musescore; do
    [[ -d $DATA/$s ]] && sets="$sets,$DATA/$s"
  done
  # The table names models by file name.
  cp "$RUNS/effects-dry/last.safetensors" "$OUT/effects_dry.safetensors"
  cp "$RUNS/effects-fx/last.safetensors" "$OUT/effects_fx.safetensors"
  $COCOLA eval --models "models/cocola_default.safetensors,$OUT/effects_dry.safetensors,$OUT/effects_fx.safetensors" \
    --data "$sets" --split test --k 2 --rows "$OUT/rows.csv" -o "$OUT"
  echo "train_effects: $OUT/eval.md"
fi
