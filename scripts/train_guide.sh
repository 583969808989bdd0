#!/usr/bin/env bash
# Trains the COCOLA model that guides CompoNet's sampling (--cocola-guidance): the mel front-end (it reads the VAE
# decoder's spectrogram directly), so that the guided outputs are judged by another model (the default hpss one).
# Stage 1 of the default model's recipe (models/README.md) with the mel front-end: the 1200 procedural songs and
# the openmsx songs, the tempo and key heads (--aux-labels 3). Session 36 measured why: without them (the
# recipe of sessions 30-35, on the demo songs) validation K = 2 stalled at 69-71% from step 1000 to 1500, the
# plateau the default model broke with them (docs/training.md section 13). Then stage 2 of that recipe, shorter
# (STEPS2, default 600 of the default model's 900): batch 32 of 16 songs x 2 windows, a lower rate decaying by a
# cosine, W at a tenth of it. Resumable: run it again.
#   bash scripts/train_guide.sh                      # start or continue stage 1 (runs/guide), then stage 2 (runs/guide-2)
#   INSTALL=1 TRAIN=0 bash scripts/train_guide.sh    # copy stage 2's best weights to models/cocola_mel_guide.safetensors
#                                                    # and evaluate them (K = 2) on the test splits
set -euo pipefail
cd "$(dirname "$0")/.."
COCOLA=./build/cocola
RUN=${RUN:-runs/guide}
RUN2=${RUN2:-$RUN-2}
STEPS=${STEPS:-3600}
STEPS2=${STEPS2:-600}
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
  if ((STEPS2 > 0)); then
    if [[ -f $RUN2/checkpoint.safetensors ]]; then
      $COCOLA --threads "$THREADS" train --resume "$RUN2" --steps "$STEPS2"
    else
      $COCOLA --threads "$THREADS" train --data data/procedural-1200,data/openmsx -o "$RUN2" --init "$RUN/last.safetensors" \
        --steps "$STEPS2" --frontend mel --batch 32 --lr 3e-4 --warmup 50 --lr-decay cosine --similarity-lr 3e-5 \
        --similarity-init-std 0.01 --loss symmetric --no-channel-masks --noise 0 --val-every 150 --val-batches 8 \
        --checkpoint-every 50 --seed 5 --aux-labels 3 --windows-per-track 2
    fi
  fi
fi
if [[ ${INSTALL:-0} == 1 ]]; then
  FROM=$RUN2/best.safetensors
  ((STEPS2 > 0)) || FROM=$RUN/best.safetensors
  cp "$FROM" models/cocola_mel_guide.safetensors
  echo "models/cocola_mel_guide.safetensors (from $FROM); its K = 2 accuracy on the held-out test splits:"
  $COCOLA eval -m models/cocola_mel_guide.safetensors --data data/demo,data/openmsx --split test --k 2 -o "$(dirname "$FROM")/eval" > /dev/null
  cat "$(dirname "$FROM")/eval/eval.md"
fi
