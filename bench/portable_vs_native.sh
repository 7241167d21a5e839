#!/usr/bin/env bash
# The portable binary (build/, x86-64-v3 with the AVX-512 kernels chosen at run time) against the native one
# (build-native/, STRETCH_NATIVE=ON) on this host, alternating ROUNDS times (default 3) in one invocation:
#   train fp32   bench_train, reference config (6 layers, width 256, 8 heads, T 256, B 16), materialized attention
#   train tiled  the same with the tiled (flash-style) attention, the path long sequences take
#   train bf16   the same with --precision bf16 where oneDNN has bf16 products
#   eval 4096    bench_eval, one forward pass over 4,096 tokens (tiled attention)
#   decode       bench_decode, cache 2,048 (the decoder's attention and the matrix-vector products)
# Prints each JSON line, then per case the medians of tokens/s and native / portable. Both folders must hold the
# benchmarks: scripts/build.sh, and
#   cmake -S . -B build-native -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTRETCH_NATIVE=ON && ninja -C build-native
#   bench/portable_vs_native.sh
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
threads=${THREADS:-2}
for d in build build-native; do
  [ -x "$d/bench_train" ] || { echo "bench/portable_vs_native.sh: $d/bench_train is missing (see the header)" >&2; exit 2; }
done
run() {  # build-dir case
  local env=(env OMP_NUM_THREADS="$threads" OMP_PROC_BIND=true OMP_PLACES=cores)
  case "$2" in
    train_fp32) "${env[@]}" "$1/bench_train" --steps 12 --warmup 3 --attention materialized ;;
    train_tiled) "${env[@]}" "$1/bench_train" --steps 12 --warmup 3 --attention tiled ;;
    train_bf16) "${env[@]}" "$1/bench_train" --steps 12 --warmup 3 --attention materialized --precision bf16 ;;
    eval_4096) "${env[@]}" "$1/bench_eval" --T 4096 --reps 2 ;;
    decode_2048) "${env[@]}" "$1/bench_decode" --model reference --ctx 2048 --new 64 ;;
  esac
}
cases=(train_fp32 train_tiled eval_4096 decode_2048)
build/stretch info --json | grep -q '"precision_bf16":true' && cases+=(train_bf16)
build/stretch info
out=$(mktemp)
for r in $(seq "$rounds"); do
  for c in "${cases[@]}"; do
    for d in build build-native; do
      line=$(run "$d" "$c" | tail -n 1)
      echo "$d $c $line"
      echo "$d $c $line" >> "$out"
    done
  done
done
python3 - "$out" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    d, c, j = line.split(" ", 2)
    j = json.loads(j)
    tps = j.get("tokens_per_s_median", j.get("tokens_per_s", j.get("decode_tokens_per_s")))
    rows.setdefault((c, d), []).append(tps)
print(f"{'case':<14}{'portable tok/s':>16}{'native tok/s':>14}{'native/portable':>17}")
for c in dict.fromkeys(k[0] for k in rows):
    p, n = statistics.median(rows[(c, "build")]), statistics.median(rows[(c, "build-native")])
    print(f"{c:<14}{p:>16.0f}{n:>14.0f}{n / p:>17.3f}")
PY
rm -f "$out"
