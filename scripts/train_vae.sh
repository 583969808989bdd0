#!/usr/bin/env bash
# Trains the generator's mel autoencoder (cocola vae train) on the training split of the procedural demo songs,
# or continues the run where it stopped; with INSTALL=1 it ships the run's best weights as
# models/vae_default.safetensors (float16) and writes the model card models/VAE.md.
#
#   bash scripts/train_vae.sh                     # start, or resume, the run (Ctrl-C stops safely)
#   INSTALL=1 TRAIN=0 bash scripts/train_vae.sh   # ship what the run has so far
#
# Environment: RUN (run folder, default runs/vae), DATA (where the songs go, default data), STEPS (total steps,
# default 4000; given again on a resume it lengthens the run), THREADS (CPU threads, default all), DEVICE (cpu or
# cuda), TRAIN (0: skip training), INSTALL (1: ship), CARD_NOTE (text added to the card).
# Only songs this project makes train it: the demo set's train split (seed 0, 240 songs of 30 s; its test split
# and every openttd-openmsx song are held out, for the reconstruction table in docs/generation.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
COCOLA=./build/cocola
RUN=${RUN:-runs/vae}
DATA=${DATA:-data}
STEPS=${STEPS:-4000}
DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-0}

# Width 32 with multipliers 1,2,4 (3.4M parameters, 8 x 16 x 128 latents per 5.12 s chunk), 1.28 s crops (the
# model is convolutional: crops train ~4x more steps per hour than whole chunks), Adam 2e-4 with a short warm-up
# and a cosine decay, gradients clipped at 1, a small KL weight (AudioLDM's autoencoders use 1e-6 on sums).
VAE_ARGS=(--width 32 --channel-mult 1,2,4 --latent-channels 8 --batch 8 --crop-frames 128 --lr 2e-4 --warmup 100
          --lr-decay cosine --kl-weight 1e-5 --clip-grad-norm 1 --val-every 250 --val-chunks 16
          --checkpoint-every 50 --checkpoint-minutes 10 --keep-snapshots 4 --seed 0)

if [[ ${TRAIN:-1} != 0 ]]; then
  echo "== data: procedural demo songs (complete tracks are skipped)"
  $COCOLA synth --demo -o "$DATA/demo"
  if [[ -f $RUN/checkpoint.safetensors ]]; then
    echo "== resuming $RUN to step $STEPS"
    $COCOLA --threads "$THREADS" vae train --resume "$RUN" --steps "$STEPS" --device "$DEVICE"
  else
    echo "== training $RUN ($STEPS steps)"
    $COCOLA --threads "$THREADS" vae train --data "$DATA/demo" -o "$RUN" --steps "$STEPS" --device "$DEVICE" "${VAE_ARGS[@]}"
  fi
fi

if [[ ${INSTALL:-0} == 1 ]]; then
  MODEL=$RUN/best.safetensors
  [[ -f $MODEL ]] || MODEL=$RUN/last.safetensors
  echo "== shipping $MODEL"
  mkdir -p models
  $COCOLA vae export "$MODEL" -o models/vae_default.safetensors --half
  STEP=$(tail -n 1 "$RUN/log.csv" | cut -d, -f1)
  {
    echo "# vae_default.safetensors: the generator's mel autoencoder"
    echo
    echo "KL autoencoder of COCOLA's log-mel spectrogram (16 kHz, hop 160, 64 bands in dB): a 5.12 s chunk"
    echo "(64 x 512) <-> latents 8 x 16 x 128, scaled to unit variance on training crops (the factor is in the file)."
    echo
    echo "- Trained by: \`bash scripts/train_vae.sh\` (run folder \`$RUN\`, step $STEP of $STEPS)."
    echo "- Command: \`cocola vae train --data data/demo -o $RUN --steps $STEPS ${VAE_ARGS[*]}\`"
    echo "- Data: \`cocola synth --demo -o data/demo\`, its train split only (procedural songs, seed 0)."
    echo "- Hardware: $DEVICE$( [[ $DEVICE == cpu ]] && echo " ($(nproc) cores)")."
    echo "- Wall time of the training steps: $(awk -F, 'NR>1 {s += $NF} END {printf "%.2f h", s / 3600}' "$RUN/log.csv")."
    echo "- Validation (16 fixed 5.12 s chunks of the valid split, posterior mean): $(awk -F, 'NR>1 && $7 != "" {v = $7; s = $1} END {printf "log-mel L1 %.2f dB at step %s", v, s}' "$RUN/log.csv")."
    echo "- Metadata: $(/usr/bin/python3 -c "import json,struct,sys; f=open(sys.argv[1],'rb'); n=struct.unpack('<Q',f.read(8))[0]; print(json.loads(f.read(n))['__metadata__']['config'])" models/vae_default.safetensors)"
    if [[ -n ${CARD_NOTE:-} ]]; then echo; echo "$CARD_NOTE"; fi
    echo
    echo "Reconstruction numbers on held-out songs: docs/generation.md."
  } > models/VAE.md
  echo "models/vae_default.safetensors, models/VAE.md"
fi
