#!/usr/bin/env bash
# Configures and builds stretch (Release) into build/. Extra arguments go to cmake. BUILD_TARGETS=stretch builds
# the program alone (scripts/demo.sh), without the tests and benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" > build.log 2>&1 || { cat build.log; exit 1; }
ninja -C build ${BUILD_TARGETS:-} >> build.log 2>&1 || { tail -n 60 build.log; exit 1; }
echo "built: build/stretch"
