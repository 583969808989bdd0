#!/usr/bin/env bash
# One call on a GPU machine (CUDA PyTorch, compiler, CMake, ninja; no Debian packages): builds cocola against the
# PyTorch's LibTorch, renders the built-in data, trains until STOP_AT seconds after the start, and leaves the run's
# log, options, curves and split model files in $OUT. Needs .dev/ from tools/gpu/make_sysroot.sh (carried), and a
# tree under the device tool's 64 MiB: tools/gpu/device_tree.sh strip before the call, restore after.
#
#   OUT=/tmp/out STOP_AT=520 bash tools/gpu/train_on_gpu.sh
#
# Environment: STOP_AT (default 520 s: fits a 600 s call), TRACKS (0: train on the demo songs; N: on N procedural
# songs of seed 1 instead; default 0), TRAIN_ARGS (the recipe; default below), INIT (a model to start from), CXXSTD (20 for LibTorch 2.13+),
# CLEAN_AT (seconds: then a second stage at a lower rate, CLEAN_ARGS, until STOP_AT).
# Measured on an H200 with 16 cores (docs/training.md section 8): configure 6 s, build 43 s, the demo songs and
# openmsx rendered in 8 s, then 8.7 steps/s at batch 24, bound by the CPU features (0.10 s of each 0.115 s step).
# The default recipe trains without the noise on positives (--noise 0: docs/training.md sections 9 and 10), with
# the tempo and key heads (--aux-labels 3: section 13); its second stage with two windows per song in a batch
# (--windows-per-track 2: section 14).
# Since then the features of training windows are computed on the GPU (--feature-path auto): not yet measured
# there; the log's feature_seconds column tells.
# MODEL=vae or MODEL=vocoder trains one of the generator's models instead (cocola vae|vocoder train on the demo
# songs, GEN_ARGS, default: scripts/train_generator.sh's recipe at a constant rate, since the run ends on the
# clock): its best, last and checkpoint files come back, so the run can continue on the CPU (copy the run folder;
# its options.json names the cache by absolute path, which must then exist: re-run `cocola data index`).
# MODEL=componet trains CompoNet's two stages (STAGE1_AT, C1_ARGS, C2_ARGS: see its branch below); bring the parts
# back with `cat componet-stage2-best.part* > best.safetensors` and ship with `cocola componet export --half`.
set -uo pipefail
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=$PWD; D=$R/.dev; OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
L=/tmp/cocola_gpu_logs; rm -rf $L; mkdir -p $L
trap '(cd $L && tar czf "$OUT"/logs.tgz .)' EXIT
STOP_AT=${STOP_AT:-520}
TRACKS=${TRACKS:-0}
TRAIN_ARGS=${TRAIN_ARGS:---steps 1000000 --frontend hpss --batch 24 --lr 1e-3 --similarity-init-std 0.01 --loss symmetric --no-channel-masks --zero-init-residual --noise 0 --aux-labels 3 --val-every 500 --val-batches 8 --checkpoint-every 500 --seed 0}
[ -f "$D"/sys.tar.xz ] || { echo "no .dev/sys.tar.xz: run tools/gpu/make_sysroot.sh first"; exit 1; }
(cd "$D" && rm -rf sys && tar xJf sys.tar.xz); S=$D/sys
sed -i "s|@PREFIX@|$S|" "$S"/lib/pkgconfig/*.pc
export PKG_CONFIG_PATH=$S/lib/pkgconfig
PKGCFG=$(command -v pkg-config || true)
if [ -z "$PKGCFG" ]; then
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/lib exec %s/bin/pkgconf "$@"\n' "$S" "$S" > "$S"/bin/pkg-config; chmod +x "$S"/bin/pkg-config
  PKGCFG=$S/bin/pkg-config
fi
export PATH=$PATH:/usr/local/cuda/bin
TROOT=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
TP=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
ABI=$(python3 -c 'import torch;print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
echo "== [$(el)s] $(nproc) cores; torch $(python3 -c 'import torch;print(torch.__version__)'); $(g++ --version | head -1); $(cmake --version | head -1)"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
COMMON=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DCOCOLA_BUILD_TESTS=OFF -DCOCOLA_BUILD_BENCH=OFF
        -DPKG_CONFIG_EXECUTABLE="$PKGCFG" -DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,"$S"/lib ${CXXSTD:+-DCMAKE_CXX_STANDARD=$CXXSTD})
if ! cmake -S . -B build-gpu "${COMMON[@]}" -DCMAKE_PREFIX_PATH="$TP;$S" > $L/cmake.log 2>&1; then
  echo "== [$(el)s] the wheel's TorchConfig failed (tail below); linking its libraries directly"; tail -25 $L/cmake.log
  rm -rf build-gpu
  cmake -S . -B build-gpu "${COMMON[@]}" -DCMAKE_PREFIX_PATH="$S" -DTorch_DIR="$D" -DTORCH_PY_ROOT="$TROOT" \
    -DTORCH_CXX11_ABI="$ABI" > $L/cmake2.log 2>&1 || { echo "== cmake failed"; tail -40 $L/cmake2.log; exit 1; }
fi
echo "== [$(el)s] configured; building"
if ! ninja -C build-gpu -k 0 cocola_cli > $L/build.log 2>&1; then
  echo "== [$(el)s] BUILD FAILED"; grep -E "error|Error" $L/build.log | head -60; tail -30 $L/build.log; exit 1
fi
echo "== [$(el)s] built"
export LD_LIBRARY_PATH=$S/lib  # for cocola only: the carried libraries must not shadow the machine's in cmake
C=$R/build-gpu/cocola
SF=$D/sf2/TimGM6mb.sf2
# The demo songs are rendered only to train on: the test splits are evaluated back on the other machine.
if [ "$TRACKS" -gt 0 ]; then
  SONGS=data/procedural-$TRACKS
  $C synth --tracks "$TRACKS" --seed 1 -o $SONGS --soundfont "$SF" 2>&1 | tail -1
else
  SONGS=data/demo
  $C synth --demo -o $SONGS --soundfont "$SF" 2>&1 | tail -1
fi
$C synth --midi "$D"/openmsx -o data/openmsx --soundfont "$SF" 2>&1 | tail -1
DATA=$SONGS,data/openmsx
echo "== [$(el)s] data rendered; training on $DATA"
# With CLEAN_AT, stage 1 stops CLEAN_AT s after the start and stage 2 (scripts/train_default.sh's: a lower rate, W
# at a tenth of it, docs/training.md section 11; without its cosine decay, since this stage ends on the clock,
# not at --steps) continues from its last weights until STOP_AT; its models come back.
MODEL=${MODEL:-cocola}
if [ "$MODEL" = componet ]; then
  # Two stages on one latent pool of the shipped VAE (models/vae_default, in the tree): stage 1 (the U-Net and
  # its prompt encoder) until STAGE1_AT s after the start (default two thirds of STOP_AT), stage 2 (the ControlNet
  # adapter on stage 1's last weights) until STOP_AT. A second call on the same warm machine resumes both runs
  # (runs/gpu-componet stays there); their best, last and checkpoint files come back in 15 MB parts.
  STAGE1_AT=${STAGE1_AT:-$((STOP_AT * 2 / 3))}
  C1_ARGS=${C1_ARGS:---prediction v --channels 64,128,256 --res-blocks 2 --prompt-dim 128 --prompt-layers 2 --pool-size 4000 --batch 32 --crop-frames 256 --lr 2e-4 --warmup 200 --lr-decay none --clip-grad-norm 1 --ema 0.999 --val-every 500 --val-chunks 16 --checkpoint-every 500 --checkpoint-minutes 2 --keep-snapshots 1 --seed 0}
  C2_ARGS=${C2_ARGS:---batch 32 --crop-frames 256 --lr 2e-4 --warmup 100 --lr-decay none --clip-grad-norm 1 --ema 0.999 --val-every 500 --val-chunks 16 --checkpoint-every 500 --checkpoint-minutes 2 --keep-snapshots 1 --seed 1}
  RD=runs/gpu-componet
  train_stage() {  # stage, seconds, arguments for a new run
    local S=$1 B=$2; shift 2
    [ $B -gt 30 ] || { echo "== no time left for stage $S ($B s)"; return 1; }
    if [ -f $RD/stage$S/checkpoint.safetensors ]; then
      echo "== [$(el)s] stage $S resumed for at most $B s"
      timeout -s INT $B "$C" --threads "$(nproc)" componet train --resume $RD/stage$S --steps 1000000 --device cuda > $L/train$S.log 2>&1
    else
      echo "== [$(el)s] stage $S for at most $B s: $*"
      timeout -s INT $B "$C" --threads "$(nproc)" componet train --stage $S --data $SONGS -o $RD/stage$S \
        --pool $RD/pool.safetensors --vae models/vae_default.safetensors --device cuda "$@" > $L/train$S.log 2>&1
    fi
    echo "== [$(el)s] stage $S exit $?"; tr '\r' '\n' < $L/train$S.log | grep -v "^$" | tail -3
    awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) if ($i ~ /^val_/ && !v) v = i; print; next} $v != ""' $RD/stage$S/log.csv | tail -4
    cp $RD/stage$S/log.csv $L/stage${S}_log.csv; cp $RD/stage$S/options.json $L/stage${S}_options.json 2>/dev/null
  }
  # shellcheck disable=SC2086
  train_stage 1 $((STAGE1_AT - $(el))) $C1_ARGS
  # shellcheck disable=SC2086
  [ -f $RD/stage1/last.safetensors ] && train_stage 2 $((STOP_AT - $(el))) $C2_ARGS --base $RD/stage1/last.safetensors
  for S in 1 2; do for m in best last checkpoint; do
    [ -f $RD/stage$S/$m.safetensors ] && split -b 15M -d $RD/stage$S/$m.safetensors "$OUT"/componet-stage$S-$m.part
  done; done
  ls -la "$OUT"; echo "== [$(el)s] done"; exit 0
fi
if [ "$MODEL" = vae ] || [ "$MODEL" = vocoder ] || [ "$MODEL" = msdm ]; then
  case $MODEL in
    # MSDM at the default width, like CompoNet's stage 1 (its pool of the shipped VAE is encoded first).
    msdm) GEN_ARGS=${GEN_ARGS:---steps 1000000 --prediction v --sources bass,drums,guitar,piano --channels 64,128,256 --res-blocks 2 --pool-size 4000 --batch 32 --crop-frames 256 --lr 2e-4 --warmup 200 --lr-decay none --clip-grad-norm 1 --ema 0.999 --val-every 500 --val-chunks 16 --checkpoint-every 500 --checkpoint-minutes 2 --seed 0 --vae models/vae_default.safetensors} ;;
    vae) GEN_ARGS=${GEN_ARGS:---steps 1000000 --width 32 --channel-mult 1,2,4 --latent-channels 8 --batch 32 --crop-frames 128 --lr 2e-4 --warmup 100 --lr-decay none --kl-weight 1e-5 --clip-grad-norm 1 --val-every 500 --val-chunks 16 --checkpoint-every 500 --checkpoint-minutes 2 --seed 0} ;;
    vocoder) GEN_ARGS=${GEN_ARGS:---steps 1000000 --prior mel-inverse --mel-matching-passes 8 --width 256 --blocks 8 --n-fft 640 --batch 32 --crop-frames 128 --lr 5e-4 --warmup 100 --lr-decay none --mel-weight 10 --stft-weight 1 --clip-grad-norm 1 --val-every 500 --val-chunks 16 --checkpoint-every 500 --checkpoint-minutes 2 --seed 0} ;;
  esac
  B=$((STOP_AT - $(el)))
  [ $B -gt 60 ] || { echo "== no time left to train ($B s)"; exit 1; }
  echo "== [$(el)s] $MODEL training for at most $B s: $GEN_ARGS"
  timeout -s INT $B "$C" --threads "$(nproc)" $MODEL train --data $SONGS -o runs/gpu-$MODEL --device cuda $GEN_ARGS > $L/train.log 2>&1
  echo "== [$(el)s] train exit $?"
  RD=runs/gpu-$MODEL
  awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) if ($i ~ /^val_/ && !v) v = i; print; next} $v != ""' $RD/log.csv; tail -1 $RD/log.csv
  cp $RD/log.csv $RD/options.json $RD/curves.svg $L/ 2>/dev/null
  for m in best last checkpoint; do [ -f $RD/$m.safetensors ] && split -b 15M -d $RD/$m.safetensors "$OUT"/$MODEL-$m.part; done
  ls -la "$OUT"; echo "== [$(el)s] done"; exit 0
fi
END1=${CLEAN_AT:-$STOP_AT}
B=$((END1 - $(el)))
[ $B -gt 60 ] || { echo "== no time left to train ($B s)"; exit 1; }
echo "== [$(el)s] training for at most $B s: $TRAIN_ARGS ${INIT:+--init $INIT}"
timeout -s INT $B "$C" --threads "$(nproc)" train --data $DATA -o runs/gpu --device cuda $TRAIN_ARGS ${INIT:+--init "$INIT"} > $L/train.log 2>&1
echo "== [$(el)s] train exit $?"
tr '\r' '\n' < $L/train.log | grep -v "^$" | tail -4
RD=runs/gpu
if [ -n "${CLEAN_AT:-}" ] && [ -f runs/gpu/last.safetensors ]; then
  cp runs/gpu/log.csv $L/stage1_log.csv
  CLEAN_ARGS=${CLEAN_ARGS:---steps 1000000 --frontend hpss --batch 24 --lr 3e-4 --warmup 50 --similarity-lr 3e-5 --similarity-init-std 0.01 --loss symmetric --no-channel-masks --noise 0 --aux-labels 3 --windows-per-track 2 --val-every 250 --val-batches 8 --checkpoint-every 250 --seed 5}
  B=$((STOP_AT - $(el)))
  echo "== [$(el)s] stage 2 for at most $B s: $CLEAN_ARGS --init runs/gpu/last.safetensors"
  timeout -s INT $B "$C" --threads "$(nproc)" train --data $DATA -o runs/gpu-clean --device cuda $CLEAN_ARGS --init runs/gpu/last.safetensors > $L/train2.log 2>&1
  echo "== [$(el)s] stage 2 exit $?"
  tr '\r' '\n' < $L/train2.log | grep -v "^$" | tail -4
  RD=runs/gpu-clean
fi
if [ -f $RD/log.csv ]; then
  awk -F, 'NR == 1 || $5 != ""' $RD/log.csv; tail -1 $RD/log.csv
  awk -F, 'NR>1 {s+=$7; f+=$8; n++} END {if (n) printf "steps %d, mean step %.4f s, mean features %.4f s\n", n, s/n, f/n}' $RD/log.csv
  cp $RD/log.csv $RD/options.json $RD/curves.svg $L/ 2>/dev/null
  # Files come back at most 16 MiB each: the ~20 MB models in parts (cat best.part* > best.safetensors).
  for m in best last; do [ -f $RD/$m.safetensors ] && split -b 15M -d $RD/$m.safetensors "$OUT"/$m.part; done
fi
ls -la "$OUT"; echo "== [$(el)s] done"
