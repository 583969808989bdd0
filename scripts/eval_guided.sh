#!/usr/bin/env bash
# COCOLA-guided sampling measured (docs/generation.md section 8): CompoNet on the same accompaniment items of the
# held-out demo and openmsx songs at several settings, each judged by the default (hpss) model, which guides
# nothing, with the guide's own score as a second column; then one summary table with paired changes from the
# unguided baseline. Resumable: an interrupted setting continues (eval-generation --resume), finished ones are kept.
#   bash scripts/eval_guided.sh                                   # the settings below, out/guided/<setting>
#   SETTINGS="s0 s1 pick4 s1-pick4" N=20 bash scripts/eval_guided.sh
# Settings: s0 = unguided (the baseline; it also runs truth and random), sS = gradient guidance at scale S
# (--cocola-guidance S), pickK = the best of K candidates by the guide's score (--candidates K --select guide),
# vV = the guide's score over V views of the spectrogram (--guide-views V); joined by -, e.g. s1-v4, s1-pick4.
# oracleK = the best of the same K candidates by the judge itself (--select cocola): not a result (the judge picks
# what it then scores) but the ceiling of selection, against which pickK's gain is read.
set -euo pipefail
cd "$(dirname "$0")/.."
COCOLA=${COCOLA:-./build/cocola}
GUIDE=${GUIDE:-models/cocola_mel_guide.safetensors}
OUT=${OUT:-out/guided}
N=${N:-10}
STEPS=${STEPS:-25}
SETTINGS=${SETTINGS:-s0 s1 s3 pick4}
DATA=${DATA:-data/demo,data/openmsx}
[[ -f $GUIDE ]] || { echo "eval_guided.sh: $GUIDE is missing (INSTALL=1 TRAIN=0 bash scripts/train_guide.sh makes it)" >&2; exit 1; }
mkdir -p "$OUT"
for setting in s0 $SETTINGS; do
  dir=$OUT/$setting
  [[ -f $dir/table.json ]] && continue
  args=(--data "$DATA" --tasks accompany --n "$N" --steps "$STEPS" --second-model "$GUIDE" --examples 4 --seed 0)
  if [[ $setting == s0 ]]; then args+=(--generators componet,truth,random); else args+=(--generators componet); fi
  for part in ${setting//-/ }; do
    case $part in
      s0) ;;
      s*) args+=(--cocola-guidance "${part#s}" --guide-model "$GUIDE") ;;
      pick*) args+=(--candidates "${part#pick}" --select guide --guide-model "$GUIDE") ;;
      v*) args+=(--guide-views "${part#v}") ;;
      oracle*) args+=(--candidates "${part#oracle}" --select cocola) ;;
      *) echo "eval_guided.sh: unknown setting part \"$part\" (sS, pickK, vV, oracleK, joined by -)" >&2; exit 1 ;;
    esac
  done
  [[ -f $dir/items.jsonl ]] && args+=(--resume)
  echo "== $setting: cocola eval-generation ${args[*]} -o $dir"
  $COCOLA eval-generation "${args[@]}" -o "$dir"
done
python3 scripts/summarize_guided.py "$OUT" s0 $SETTINGS | tee "$OUT/summary.md"
