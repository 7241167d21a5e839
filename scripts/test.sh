#!/usr/bin/env bash
# README's second command: install what is needed, build, and run the whole test suite with ctest, for the
# portable target (build/, x86-64-v3 with the AVX-512 kernels chosen at run time) and for this machine's
# (build-native/, STRETCH_NATIVE=ON); then the same suite built with AddressSanitizer + UndefinedBehaviorSanitizer
# (build-asan/), and every libFuzzer target for a few seconds on its corpus (scripts/fuzz.sh, build-fuzz/).
# docs/RELIABILITY.md says what each finds.
#   STRETCH_TEST_QUICK=1 scripts/test.sh    only the first part (the portable build and suite), for development
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh -DSTRETCH_WERROR=ON
# the embedded default corpus, so its reader is tested on the real package
export STRETCH_JANEAUSTEN_DIR="${STRETCH_JANEAUSTEN_DIR:-$PWD/$(scripts/fetch-austen.sh)}"
export OMP_PROC_BIND="${OMP_PROC_BIND:-true}" OMP_PLACES="${OMP_PLACES:-cores}"
(cd build && ctest --output-on-failure -j "$(nproc)")
[ -n "${STRETCH_TEST_QUICK:-}" ] && { echo "STRETCH_TEST_QUICK: sanitizers and fuzzing skipped"; exit 0; }

echo "== the suite built for this machine's CPU (build-native/, STRETCH_NATIVE=ON) =="
cmake -S . -B build-native -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTRETCH_NATIVE=ON -DSTRETCH_BENCH=OFF \
  -DSTRETCH_WERROR=ON > build-native.log 2>&1 || { cat build-native.log; exit 1; }
ninja -C build-native >> build-native.log 2>&1 || { tail -n 60 build-native.log; exit 1; }
(cd build-native && ctest --output-on-failure -j "$(nproc)")

echo "== the suite under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/) =="
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTRETCH_SANITIZE=ON -DSTRETCH_BENCH=OFF \
  -DSTRETCH_WERROR=ON > build-asan.log 2>&1 || { cat build-asan.log; exit 1; }
ninja -C build-asan >> build-asan.log 2>&1 || { tail -n 60 build-asan.log; exit 1; }
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
(cd build-asan && ctest --output-on-failure -j "$(nproc)")

echo "== each fuzz target for 5 seconds on its seeds and past findings (build-fuzz/) =="
scripts/fuzz.sh 5
