#!/usr/bin/env bash
# README's second command: install what is needed, build, and run the whole test suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh -DSTRETCH_WERROR=ON
# the embedded default corpus, so its reader is tested on the real package
export STRETCH_JANEAUSTEN_DIR="${STRETCH_JANEAUSTEN_DIR:-$PWD/$(scripts/fetch-austen.sh)}"
export OMP_PROC_BIND="${OMP_PROC_BIND:-true}" OMP_PLACES="${OMP_PLACES:-cores}"
cd build
ctest --output-on-failure -j "$(nproc)"
