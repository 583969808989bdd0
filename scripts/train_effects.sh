#!/usr/bin/env bash
# Issue 23, the effects lever: fine-tunes the shipped default model on its own training songs plus the same songs
# through random production effects (`cocola synth --effects random`), beside a control fine-tuned identically on
# the dry songs alone, then evaluates both and the default on the dry and effects test sets and the
# cross-SoundFont sets (docs/training.md section 17). A third arm, fly, trains on the dry songs with effects drawn
# anew for every window and stem (`--stem-effects`), a fourth, gain, with other mixing levels drawn anew for every
# window and stem (`--stem-gain-db`; docs/training.md section 20), a fifth, varied, on the training songs played
# both as usual and with an extra pool of playing styles (`cocola synth --playing varied`; section 21). The
# evaluation includes the held-out playing styles (`--playing unseen`). Resumable: run it again after an
# interruption.
#
#   bash scripts/train_effects.sh                 # STEPS=300 each, the runs side by side (one thread each)
#   STEPS=900 bash scripts/train_effects.sh       # continue the runs to 900 steps
#   ARMS="dry fly" bash scripts/train_effects.sh  # the control and the on-the-fly effects (section 20)
#
# Environment: STEPS (default 300), ARMS (any of dry, fx, fly, gain, varied; default "dry fx"), STEM_EFFECTS (fly's
# probability per stem, default 0.5), STEM_GAIN_DB (gain's range, default 6), DATA (default data), RUNS (default runs), OUT (default out/effects),
# EVAL=0 to train only.
set -euo pipefail
cd "$(dirname "$0")/.."
COCOLA=./build/cocola
DATA=${DATA:-data}
RUNS=${RUNS:-runs}
OUT=${OUT:-out/effects}
STEPS=${STEPS:-300}
ARMS=${ARMS:-dry fx}
STEM_EFFECTS=${STEM_EFFECTS:-0.5}
STEM_GAIN_DB=${STEM_GAIN_DB:-6}
MIDI=/usr/share/games/openttd/baseset/openmsx
bash scripts/setup.sh

# The default model's training songs (models/README.md), dry and through effects; the test songs likewise.
$COCOLA synth --tracks 1200 --seed 1 -o "$DATA/procedural-1200"
[[ " $ARMS " == *" fx "* ]] && $COCOLA synth --tracks 1200 --seed 1 --effects random -o "$DATA/procedural-1200-fx"
[[ " $ARMS " == *" varied "* ]] && $COCOLA synth --tracks 1200 --seed 1 --playing varied -o "$DATA/procedural-1200-varied"
$COCOLA synth --midi "$MIDI" -o "$DATA/openmsx"
$COCOLA synth --midi "$MIDI" --effects random -o "$DATA/openmsx-fx"
$COCOLA synth --demo -o "$DATA/demo"
$COCOLA synth --demo --effects random -o "$DATA/demo-fx"
$COCOLA synth --demo --playing unseen -o "$DATA/demo-unseen"

# Stage 2 of the default recipe, shorter and at a third of its rate, from the shipped weights.
common=(--frontend hpss --batch 32 --lr 1e-4 --warmup 20 --lr-decay cosine --similarity-lr 1e-5
        --similarity-init-std 0.01 --loss symmetric --no-channel-masks --noise 0 --val-every 150 --val-batches 8
        --checkpoint-every 25 --seed 7 --aux-labels 3 --windows-per-track 2 --init models/cocola_default.safetensors)
run() {  # run NAME DATA [FLAGS...]
  local name=$1 data=$2
  shift 2
  if [[ -f $RUNS/$name/checkpoint.safetensors ]]; then
    $COCOLA --threads 1 train --resume "$RUNS/$name" --steps "$STEPS"
  else
    $COCOLA --threads 1 train --data "$data" -o "$RUNS/$name" --steps "$STEPS" "${common[@]}" "$@"
  fi
}
mkdir -p "$RUNS"
pids=()
for arm in $ARMS; do
  case $arm in
    dry) run effects-dry "$DATA/procedural-1200,$DATA/openmsx" > "$RUNS/effects-dry.log" 2>&1 & ;;
    fx) run effects-fx "$DATA/procedural-1200,$DATA/procedural-1200-fx,$DATA/openmsx,$DATA/openmsx-fx" \
          > "$RUNS/effects-fx.log" 2>&1 & ;;
    fly) run effects-fly "$DATA/procedural-1200,$DATA/openmsx" --stem-effects "$STEM_EFFECTS" \
           > "$RUNS/effects-fly.log" 2>&1 & ;;
    gain) run effects-gain "$DATA/procedural-1200,$DATA/openmsx" --stem-gain-db "$STEM_GAIN_DB" \
            > "$RUNS/effects-gain.log" 2>&1 & ;;
    varied) run effects-varied "$DATA/procedural-1200,$DATA/procedural-1200-varied,$DATA/openmsx" \
              > "$RUNS/effects-varied.log" 2>&1 & ;;
    *) echo "train_effects: unknown arm $arm (dry, fx, fly, gain or varied)" >&2; exit 2 ;;
  esac
  pids+=("$!")
done
i=0
for arm in $ARMS; do
  wait "${pids[$i]}" || { echo "train_effects: the $arm run failed, see $RUNS/effects-$arm.log" >&2; exit 1; }
  i=$((i + 1))
done
echo "train_effects: trained $ARMS to $STEPS steps (in $RUNS/effects-*; logs $RUNS/effects-*.log)"

if [[ ${EVAL:-1} != 0 ]]; then
  mkdir -p "$OUT"
  sets="$DATA/demo,$DATA/demo-fx,$DATA/demo-unseen,$DATA/openmsx,$DATA/openmsx-fx"
  for s in demo-fluid demo-musescore openmsx-fluid openmsx-musescore; do
    [[ -d $DATA/$s ]] && sets="$sets,$DATA/$s"
  done
  # The table names models by file name.
  models=models/cocola_default.safetensors
  for arm in $ARMS; do
    cp "$RUNS/effects-$arm/last.safetensors" "$OUT/effects_$arm.safetensors"
    models="$models,$OUT/effects_$arm.safetensors"
  done
  $COCOLA eval --models "$models" --data "$sets" --split test --k 2 --rows "$OUT/rows.csv" -o "$OUT"
  echo "train_effects: $OUT/eval.md"
fi
