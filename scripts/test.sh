#!/usr/bin/env bash
# The whole test suite: install, build, run every test (CTest: GoogleTest, the Python module's pytest, the fuzz
# targets on their seeds), then the torch-free library's tests and fuzz targets again under AddressSanitizer and
# UndefinedBehaviorSanitizer (a second, small build in build-sanitize; COCOLA_SANITIZER_TESTS=0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS=${JOBS:-$(nproc)}
if [[ "${COCOLA_SANITIZER_TESTS:-1}" != 0 ]]; then
  cmake -S . -B build-sanitize -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOCOLA_BASE_ONLY=ON \
    -DCOCOLA_SANITIZE=address,undefined -DCOCOLA_FUZZ_SECONDS=8 >/dev/null
  cmake --build build-sanitize -j "$JOBS"
  (cd build-sanitize && ctest --output-on-failure -j "$JOBS" --timeout 1500)
fi
cd build
ctest --output-on-failure -j "$JOBS" --timeout 1500
