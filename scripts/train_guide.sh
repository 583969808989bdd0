#!/usr/bin/env bash
# Trains the COCOLA model that guides CompoNet's sampling (--cocola-guidance): the mel front-end (it reads the VAE
# decoder's spectrogram directly), so that the guided outputs are judged by another model (the default hpss one).
# Stage 1 of the default model's recipe (models/README.md) with the mel front-end: the 1200 procedural songs and
# the openmsx songs, the tempo and key heads (--aux-labels 3). Session 36 measured why: without them (the
# recipe of sessions 30-35, on the demo songs) validation K = 2 stalled at 69-71% from step 1000 to 1500, the
# plateau the default model broke with them (docs/training.md section 13). Resumable: run it again.
#   STEPS=3600 bash scripts/train_guide.sh           # start or continue (runs/guide)
#   INSTALL=1 TRAIN=0 bash scripts/train_guide.sh    # copy the best weights to models/cocola_mel_guide.safetensors
set -euo pipefail
cd "$(dirname "$0")/.."
COCOLA=./build/cocola
RUN=${RUN:-runs/guide}
STEPS=${STEPS:-3600}
THREADS=${THREADS:-0}
if [[ ${TRAIN:-1} != 0 ]]; then
  bash scripts/setup.sh
  $COCOLA synth --demo -o data/demo
  $COCOLA synth --tracks 1200 --seed 1 -o data/procedural-1200
  $COCOLA synth --midi /usr/share/games/openttd/baseset/openmsx -o data/openmsx
  if [[ -f $RUN/checkpoint.safetensors ]]; then
    $COCOLA --threads "$THREADS" train --resume "$RUN" --steps "$STEPS"
  else
    $COCOLA --threads "$THREADS" train --data data/procedural-1200,data/openmsx -o "$RUN" --steps "$STEPS" --frontend mel \
      --batch 16 --lr 1e-3 --similarity-init-std 0.01 --loss symmetric --no-channel-masks --zero-init-residual --noise 0 \
      --val-every 300 --val-batches 8 --checkpoint-every 50 --seed 0 --aux-labels 3
  fi
fi
if [[ ${INSTALL:-0} == 1 ]]; then
  cp "$RUN/best.safetensors" models/cocola_mel_guide.safetensors
  echo "models/cocola_mel_guide.safetensors (from $RUN/best.safetensors)"
fi
