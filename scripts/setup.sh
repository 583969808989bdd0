#!/usr/bin/env bash
# Installs what cocola needs on Debian 12 (as root), then configures and builds it in ./build.
# Idempotent: packages already present are not fetched again; the build is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  g++ cmake ninja-build pkg-config
  libtorch-dev libopenblas0-pthread          # the model; OpenBLAS instead of netlib BLAS (10x faster matmuls)
  libgoogle-perftools-dev                    # tcmalloc for the programs (training steps 1.8x faster than glibc malloc)
  libgloo-dev                                # headers of c10d's Gloo process group (training on many machines)
  libsndfile1-dev libsoxr-dev libfftw3-dev   # audio I/O, resampling, STFT
  libsox-dev                                 # audio effects (cocola synth --effects)
  libcli11-dev nlohmann-json3-dev libyaml-cpp-dev googletest
  libfluidsynth-dev timgm6mb-soundfont openttd-openmsx   # multi-stem music synthesis and MIDI songs
  python3-torch python3-numpy                # tools/convert_official_checkpoint.py and its test
  pybind11-dev python3-dev python3-pytest    # the Python module and its tests
  chromium-headless-shell                    # the test that opens eval-generation's listening page
)
# BENCH=1: also the Python references of the bench/ programs (eager PyTorch front-ends and network).
if [[ ${BENCH:-0} == 1 ]]; then PACKAGES+=(python3-torchaudio python3-scipy); fi
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "cocola setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

JOBS=${JOBS:-$(nproc)}
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-} >/dev/null
cmake --build build -j "$JOBS"
