#!/usr/bin/env bash
# The whole test suite: install, build, run every test (CTest + GoogleTest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd build
ctest --output-on-failure -j "${JOBS:-$(nproc)}" --timeout 1500
