#!/usr/bin/env bash
# Trains one of the generator's models on the training split of the procedural demo songs, or continues its run
# where it stopped; with INSTALL=1 it ships the run's best weights as models/<model>_default.safetensors (float16)
# with a model card models/<MODEL>.md.
#
#   bash scripts/train_generator.sh vae|vocoder|componet|msdm                    # start, or resume (Ctrl-C stops safely)
#   INSTALL=1 TRAIN=0 bash scripts/train_generator.sh vae|vocoder|componet|msdm  # ship what the run has so far
#
# componet trains in two stages on one latent pool (RUN/pool.safetensors, latents of the shipped VAE): stage 1
# (RUN/stage1, STEPS steps) the U-Net denoiser with its prompt encoder, stage 2 (RUN/stage2, STEPS2 steps, default
# STEPS / 2) the ControlNet adapter on stage 1's last weights; it ships stage 2's best.
#
# Environment: RUN (run folder, default runs/<model>), DATA (where the songs go, default data), STEPS (total steps,
# default 4000; given again on a resume it lengthens the run), THREADS (CPU threads, default all), DEVICE (cpu or
# cuda), TRAIN (0: skip training), INSTALL (1: ship), CARD_NOTE (text added to the card), FINETUNE_FROM (componet,
# msdm: a model file the run starts from, --init, at half the rate with a 50-step warm-up; how the shipped v models
# were made from the epsilon ones).
#
# componet and msdm are v-prediction models (--prediction v): an epsilon model's clean estimate at the top of the
# schedule multiplies its error 70-fold and fixes each chunk's loudness and spectral balance from it (docs/generation.md).
# Only songs this project makes train them: the demo set's train split (seed 0, 240 songs of 30 s); its test split
# and every openttd-openmsx song are held out, for the reconstruction table in docs/generation.md.
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-}
case $WHAT in
  # Width 32 with multipliers 1,2,4 (3.4M parameters, 8 x 16 x 128 latents per 5.12 s chunk), 1.28 s crops (the
  # model is convolutional: crops train ~4x more steps per hour than whole chunks), Adam 2e-4 with a short warm-up
  # and a cosine decay, gradients clipped at 1, a small KL weight (AudioLDM's autoencoders use 1e-6 on sums).
  vae) ARGS=(--width 32 --channel-mult 1,2,4 --latent-channels 8 --batch 8 --crop-frames 128 --lr 2e-4 --warmup 100
             --lr-decay cosine --kl-weight 1e-5 --clip-grad-norm 1 --val-every 250 --val-chunks 16
             --checkpoint-every 50 --checkpoint-minutes 10 --keep-snapshots 4 --seed 0)
       TITLE="the generator's mel autoencoder"
       ABOUT="KL autoencoder of COCOLA's log-mel spectrogram (16 kHz, hop 160, 64 bands in dB): a 5.12 s chunk (64 x 512) <-> latents 8 x 16 x 128, scaled to unit variance on training crops (the factor is in the file's config)." ;;
  # A Vocos-style vocoder: width 256, 8 ConvNeXt blocks at the frame rate, inverse STFT of 640 points; AdamW 5e-4,
  # log-mel L1 (weight 10, in units of the spectrogram's spread) plus the multi-resolution STFT loss, no adversary.
  # The magnitudes are a correction to those the mel implies through the filterbank (--prior mel-inverse, FreeV):
  # at equal steps it halves the log-mel error of the vocoder without it (docs/generation.md section 4). After the
  # network, 8 passes re-level its audio to the input's log-mel (inference only; stored in the weights' config).
  vocoder) ARGS=(--prior mel-inverse --mel-matching-passes 8 --width 256 --blocks 8 --n-fft 640 --batch 8 --crop-frames 128 --lr 5e-4 --warmup 100
                 --lr-decay cosine --mel-weight 10 --stft-weight 1 --clip-grad-norm 1 --val-every 250 --val-chunks 16
                 --checkpoint-every 50 --checkpoint-minutes 10 --keep-snapshots 4 --seed 0)
       TITLE="the generator's neural vocoder"
       ABOUT="Vocos-style vocoder: log-mel (64 bands, hop 160) -> ConvNeXt at 100 frames/s -> a correction to the STFT magnitudes the mel implies (mel-inverse prior) and the phase (n_fft 640) -> inverse STFT at 16 kHz -> 8 mel-matching passes." ;;
  # CompoNet at CPU scale: U-Net widths 32,64,128 (cross-attention to the prompt on the two lower levels), a
  # 64-wide prompt encoder of 2 layers, 2.56 s crops (8 x 16 x 64 latents), AdamW 2e-4, a pool of 1000 examples.
  # The GPU recipe (tools/gpu/train_on_gpu.sh MODEL=componet) is the paper-like default width 64,128,256.
  componet) ARGS=(--prediction v --channels 32,64,128 --res-blocks 2 --prompt-dim 64 --prompt-layers 2 --pool-size 1000 --batch 8
                  --crop-frames 256 --lr 2e-4 --warmup 100 --lr-decay cosine --clip-grad-norm 1 --ema 0.999
                  --val-every 250 --val-chunks 16 --checkpoint-every 50 --checkpoint-minutes 10 --keep-snapshots 2 --seed 0)
            ARGS2=(--pool-size 1000 --batch 8 --crop-frames 256 --lr 2e-4 --warmup 50 --lr-decay cosine --clip-grad-norm 1 --ema 0.999
                   --val-every 250 --val-chunks 16 --checkpoint-every 50 --checkpoint-minutes 10 --keep-snapshots 2 --seed 1)
            TITLE="CompoNet, the prompted latent diffusion model with its ControlNet adapter"
            ABOUT="Denoiser (v prediction, 1000 steps, scaled-linear betas) of the shipped VAE's latents, prompted with stem tags (\`in: piano; out: bass, drums\`) through a small transformer and cross-attention; the ControlNet adapter reads the input stems' latents. Sampled with DDIM and classifier-free guidance by \`cocola generate\`." ;;
  # The MSDM baseline at the same scale as CompoNet's stage 1 (widths 32,64,128, 2.56 s crops, a pool of 1000
  # chunks), over the sources bass, drums, guitar, piano (Slakh2100's four; classes both test sets have): each
  # source is encoded by the VAE on its own and the four latents are stacked (32 channels). Unconditional.
  msdm) ARGS=(--prediction v --sources bass,drums,guitar,piano --channels 32,64,128 --res-blocks 2 --pool-size 1000 --batch 8
              --crop-frames 256 --lr 2e-4 --warmup 100 --lr-decay cosine --clip-grad-norm 1 --ema 0.999
              --val-every 250 --val-chunks 16 --checkpoint-every 50 --checkpoint-minutes 10 --keep-snapshots 2 --seed 0)
        TITLE="the MSDM baseline, one unconditional diffusion model over four fixed sources"
        ABOUT="Denoiser (v prediction, 1000 steps, scaled-linear betas) of the shipped VAE's latents of four sources (bass, drums, guitar, piano) stacked as 32 channels, trained without a prompt; it accompanies by inpainting the given sources at every DDIM step and keeps the loudest of 12 candidates (\`cocola generate --model msdm\`)." ;;
  *) echo "usage: bash scripts/train_generator.sh vae|vocoder|componet|msdm" >&2; exit 2 ;;
esac
if [[ -n ${FINETUNE_FROM:-} ]]; then
  [[ $WHAT == componet || $WHAT == msdm ]] || { echo "FINETUNE_FROM: only componet and msdm" >&2; exit 2; }
  [[ -f $FINETUNE_FROM ]] || { echo "FINETUNE_FROM: $FINETUNE_FROM does not exist" >&2; exit 2; }
  finetune() {  # half the rate, a short warm-up, and the weights to start from
    local -n a=$1
    for i in "${!a[@]}"; do
      case ${a[i]} in --lr) a[i+1]=1e-4 ;; --warmup) a[i+1]=50 ;; esac
    done
    a+=(--init "$FINETUNE_FROM")
  }
  finetune ARGS
  if [[ $WHAT == componet ]]; then finetune ARGS2; fi
fi
bash scripts/setup.sh
COCOLA=./build/cocola
RUN=${RUN:-runs/$WHAT}
DATA=${DATA:-data}
STEPS=${STEPS:-4000}
DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-0}

if [[ ${TRAIN:-1} != 0 ]]; then
  echo "== data: procedural demo songs (complete tracks are skipped)"
  $COCOLA synth --demo -o "$DATA/demo"
  if [[ $WHAT == componet ]]; then
    STEPS2=${STEPS2:-$((STEPS / 2))}
    for STAGE in 1 2; do
      SRUN=$RUN/stage$STAGE
      if [[ $STAGE == 1 ]]; then N=$STEPS; SARGS=("${ARGS[@]}"); else N=$STEPS2; SARGS=("${ARGS2[@]}" --base "$RUN/stage1/last.safetensors"); fi
      if [[ -f $SRUN/checkpoint.safetensors ]]; then
        DONE=$(tail -n 1 "$SRUN/log.csv" | cut -d, -f1)
        if [[ $STAGE == 1 && -d $RUN/stage2 && $DONE -ge $N ]]; then continue; fi
        echo "== resuming $SRUN to step $N"
        $COCOLA --threads "$THREADS" componet train --resume "$SRUN" --steps "$N" --device "$DEVICE"
      else
        echo "== training $SRUN (stage $STAGE, $N steps)"
        $COCOLA --threads "$THREADS" componet train --stage "$STAGE" --data "$DATA/demo" -o "$SRUN" --steps "$N" \
          --pool "$RUN/pool.safetensors" --vae models/vae_default.safetensors --device "$DEVICE" "${SARGS[@]}"
      fi
    done
  elif [[ -f $RUN/checkpoint.safetensors ]]; then
    echo "== resuming $RUN to step $STEPS"
    $COCOLA --threads "$THREADS" "$WHAT" train --resume "$RUN" --steps "$STEPS" --device "$DEVICE"
  else
    echo "== training $RUN ($STEPS steps)"
    $COCOLA --threads "$THREADS" "$WHAT" train --data "$DATA/demo" -o "$RUN" --steps "$STEPS" --device "$DEVICE" "${ARGS[@]}"
  fi
fi

if [[ ${INSTALL:-0} == 1 ]]; then
  LOGRUN=$RUN
  if [[ $WHAT == componet ]]; then
    LOGRUN=$RUN/stage2
    STAGE1_STEPS=$(tail -n 1 "$RUN/stage1/log.csv" | cut -d, -f1)
    STEPS=${STEPS2:-$((STEPS / 2))}
  fi
  MODEL=$LOGRUN/best.safetensors
  [[ -f $MODEL ]] || MODEL=$LOGRUN/last.safetensors
  echo "== shipping $MODEL"
  mkdir -p models
  $COCOLA "$WHAT" export "$MODEL" -o "models/${WHAT}_default.safetensors" --half
  CARD=models/$(echo "$WHAT" | tr a-z A-Z).md
  STEP=$(tail -n 1 "$LOGRUN/log.csv" | cut -d, -f1)
  BEST=$(/usr/bin/python3 -c "import json,struct,sys; f=open(sys.argv[1],'rb'); n=struct.unpack('<Q',f.read(8))[0]; m=json.loads(f.read(n))['__metadata__']; print(m.get('step', '?'))" "$MODEL")
  {
    echo "# ${WHAT}_default.safetensors: $TITLE"
    echo
    echo "$ABOUT"
    echo
    echo "- Trained by: \`bash scripts/train_generator.sh $WHAT\` (run folder \`$(basename "$RUN")\`, $STEP steps of $STEPS;"
    echo "  shipped: the best validation checkpoint, step $BEST, as float16)."
    if [[ $WHAT == componet ]]; then
      echo "- Commands: \`cocola componet train --stage 1 --data data/demo -o runs/componet/stage1 --pool runs/componet/pool.safetensors --vae models/vae_default.safetensors --steps ${STAGE1_STEPS:-?} ${ARGS[*]}\`,"
      echo "  then \`cocola componet train --stage 2 --data data/demo -o runs/componet/stage2 --pool runs/componet/pool.safetensors --vae models/vae_default.safetensors --steps $STEPS ${ARGS2[*]} --base runs/componet/stage1/last.safetensors\`"
    else
      echo "- Command: \`cocola $WHAT train --data data/demo -o runs/$WHAT --steps $STEPS ${ARGS[*]}\`"
    fi
    echo "- Data: \`cocola synth --demo -o data/demo\`, its train split only (procedural songs, seed 0)."
    echo "- Hardware: $DEVICE$( [[ $DEVICE == cpu ]] && echo ", $(nproc) cores")."
    echo "- Wall time of the training steps: $(cat "$LOGRUN"/../stage1/log.csv "$LOGRUN/log.csv" 2>/dev/null | awk -F, '$1 ~ /^[0-9]/ {s += $NF} END {printf "%.2f h", s / 3600}')."
    echo "- Validation (16 fixed 5.12 s chunks of the valid split), last rows of log.csv:"
    echo
    echo '```'
    head -n 1 "$LOGRUN/log.csv"
    # rows with a validation value (the first val_* column)
    awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) if ($i ~ /^val_/ && !v) v = i; next} $v != ""' "$LOGRUN/log.csv" | tail -n 3
    echo '```'
    echo
    echo "- Config (in the file's metadata): $(/usr/bin/python3 -c "import json,struct,sys; f=open(sys.argv[1],'rb'); n=struct.unpack('<Q',f.read(8))[0]; print(json.loads(f.read(n))['__metadata__']['config'])" "models/${WHAT}_default.safetensors")"
    if [[ -n ${CARD_NOTE:-} ]]; then echo; echo "$CARD_NOTE"; fi
    echo
    if [[ $WHAT == componet || $WHAT == msdm ]]; then echo "Generation numbers on held-out songs: docs/generation.md."
    else echo "Reconstruction numbers on held-out songs: docs/generation.md."; fi
  } > "$CARD"
  echo "models/${WHAT}_default.safetensors, $CARD"
fi
