#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/<target>.cpp) with clang into build-fuzz/ (-DSTRETCH_FUZZ=ON: libFuzzer,
# AddressSanitizer, UndefinedBehaviorSanitizer) and runs each for SECONDS (default 5) on its seed corpus and past
# regressions. Usage:
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]        (default: every target; see `ls fuzz/*.cpp`)
#
# New inputs libFuzzer finds go to build-fuzz/corpus/<target>/ (not committed; fuzz/corpus/ holds only the seeds).
# A crash, hang (-timeout), leak, out-of-memory (-rss_limit_mb, also caps single allocations) or sanitizer report
# stops that target and leaves the input in build-fuzz/artifacts/<target>/; copy it to fuzz/regressions/<target>/
# once fixed, so the ordinary test suite replays it (ctest -R fuzz_replay). Logs: build-fuzz/logs/<target>.log.
# Environment: JOBS (build parallelism, default nproc), FUZZ_ARGS (more libFuzzer flags, e.g. "-jobs=2").
# Exits non-zero when any target found something.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
shift || true
if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz/*.cpp; do
    t="$(basename "$f" .cpp)"
    [ "$t" = replay_main ] || targets+=("$t")
  done
fi
B=build-fuzz
mkdir -p "$B"
if [ ! -f "$B/build.ninja" ]; then
  cmake -S . -B "$B" -G Ninja -DCMAKE_CXX_COMPILER="${CXX_FUZZ:-clang++}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g" -DSTRETCH_FUZZ=ON -DSTRETCH_TESTS=OFF -DSTRETCH_BENCH=OFF \
    > "$B/build.log" 2>&1 || { cat "$B/build.log"; exit 1; }
fi
ninja -C "$B" -j "${JOBS:-$(nproc)}" "${targets[@]/#/fuzz_}" >> "$B/build.log" 2>&1 || { tail -n 60 "$B/build.log"; exit 1; }

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$B/logs"
failed=()
for t in "${targets[@]}"; do
  mkdir -p "$B/corpus/$t" "$B/artifacts/$t"
  seeds=(fuzz/corpus/"$t")
  [ -d fuzz/regressions/"$t" ] && seeds+=(fuzz/regressions/"$t")
  # shellcheck disable=SC2086
  if "$B/fuzz_$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2560 -malloc_limit_mb=1024 \
       -print_final_stats=1 -artifact_prefix="$B/artifacts/$t/" ${FUZZ_ARGS:-} \
       "$B/corpus/$t" "${seeds[@]}" > "$B/logs/$t.log" 2>&1; then
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$B/logs/$t.log" | grep -o '[0-9]*$' | tail -n 1)"
    echo "fuzz $t: ok, ${secs}s, ${execs:-?} executions, corpus $(ls "$B/corpus/$t" | wc -l) new inputs"
  else
    echo "fuzz $t: FOUND SOMETHING (log $B/logs/$t.log, input in $B/artifacts/$t/):"
    grep -E 'ERROR|runtime error|terminate|Test unit written' "$B/logs/$t.log" | head -n 5 || tail -n 20 "$B/logs/$t.log"
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: findings in ${failed[*]}"
  exit 1
fi
