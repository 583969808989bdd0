#!/usr/bin/env bash
# The cross-SoundFont table (docs/training.md section 16): the same held-out songs rendered with the SoundFont the
# models were trained with (TimGM6mb) and with two they never heard (FluidR3 GM, MuseScore General Lite), and the
# K = 2 coherent sub-mix accuracy of one or more models on each. A proxy for music with unfamiliar timbres.
#
#   bash scripts/eval_cross_soundfont.sh                        # the shipped default model
#   MODELS=a.safetensors,b.safetensors bash scripts/eval_cross_soundfont.sh
#
# Environment: MODELS (comma-separated, default the shipped default model), DATA (where songs go, default data),
# OUT (report folder, default out/cross-soundfont). Rendering is skipped for complete tracks, so a rerun is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
missing=()
for p in fluid-soundfont-gm musescore-general-soundfont-small; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "cross-soundfont: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
COCOLA=./build/cocola
DATA=${DATA:-data}
OUT=${OUT:-out/cross-soundfont}
MODELS=${MODELS:-models/cocola_default.safetensors}
MIDI=/usr/share/games/openttd/baseset/openmsx
declare -A FONT=([timgm6mb]=/usr/share/sounds/sf2/TimGM6mb.sf2 [fluid]=/usr/share/sounds/sf2/FluidR3_GM.sf2
                 [musescore]=/usr/share/sounds/sf3/MuseScore_General_Lite.sf3)
SETS=()
for name in timgm6mb fluid musescore; do
  # The training SoundFont's sets keep their usual names (data/demo, data/openmsx), shared with the other scripts.
  suffix=$([[ $name == timgm6mb ]] && echo "" || echo "-$name")
  $COCOLA synth --demo --soundfont "${FONT[$name]}" -o "$DATA/demo$suffix"
  $COCOLA synth --midi "$MIDI" --soundfont "${FONT[$name]}" -o "$DATA/openmsx$suffix"
  SETS+=("$DATA/demo$suffix" "$DATA/openmsx$suffix")
done
ORDERED="${SETS[0]},${SETS[2]},${SETS[4]},${SETS[1]},${SETS[3]},${SETS[5]}"
$COCOLA eval --models "$MODELS" --data "$ORDERED" --split test --k 2 -o "$OUT"
echo "cross-soundfont: $OUT/eval.md"
