#!/usr/bin/env bash
# Data-parallel training on this machine: tokens/s of `stretch train` on the reference config (byte vocabulary,
# 6 layers, width 256, 8 heads, MLP 1024, T = 256, global batch 16, fp32) for
#   1 rank  x 1 thread     the baseline
#   2 ranks x 1 thread     mpirun -np 2 (one core each): the global batch split 8 + 8, one gradient all-reduce per step
#   1 rank  x 2 threads    the same two cores used by OpenMP instead, for comparison
# alternating, ROUNDS times, in one invocation; then the all-reduce alone at the gradient slab's size
# (build/bench_allreduce). Speed is measured from metrics.jsonl between step SKIP and the last step (start-up
# and the final validation excluded); the all-reduce share is its time over the same span.
#   bench/distributed.sh              (STEPS=40 SKIP=5 ROUNDS=2; DATA=../shared/data)
# Prints one JSON line per run, then a summary. Needs MPI (scripts/install-deps.sh installs Open MPI).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${STEPS:-40}
skip=${SKIP:-5}
rounds=${ROUNDS:-2}
text=${DATA:-../shared/data}/wikitext/wikitext-2/wiki.train.tokens
[ -f "$text" ] || { echo "bench/distributed.sh: missing $text (../shared/data beside the repository)" >&2; exit 3; }
command -v mpirun > /dev/null || { echo "bench/distributed.sh: mpirun not found (Debian: openmpi-bin)" >&2; exit 3; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_PROC_BIND=true OMP_PLACES=cores
args=(train --text "$text" --valid-fraction 0.001 --layers 6 --width 256 --heads 8 --mlp 1024 --length 256
      --batch 16 --log-interval 1 --eval-interval 0 --ckpt-interval 0 --quiet
      --cache-dir "$out/cache")
build/stretch "${args[@]}" --steps 1 --warmup 0 --threads 1 --out "$out/warm" > /dev/null  # the token cache
args+=(--steps "$steps" --warmup 5)

measure() {  # name ranks threads
  local dir="$out/$1-$RANDOM"
  if [ "$2" -gt 1 ]; then
    mpirun -np "$2" --bind-to core build/stretch "${args[@]}" --threads "$3" --out "$dir" > /dev/null
  else
    taskset -c 0-$(($3 - 1)) build/stretch "${args[@]}" --threads "$3" --out "$dir" > /dev/null
  fi
  python3 - "$dir/metrics.jsonl" "$1" "$2" "$3" "$skip" <<'PY'
import json, sys
path, name, ranks, threads, skip = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = [json.loads(l) for l in open(path) if '"loss"' in l]
a = next(r for r in rows if r["step"] == skip)
b = rows[-1]
span = b["elapsed_s"] - a["elapsed_s"]
tok = (b["step"] - a["step"]) * 16 * 256
ar = b.get("allreduce_s", 0.0) - a.get("allreduce_s", 0.0)
print(json.dumps({"run": name, "ranks": ranks, "threads_per_rank": threads, "steps": b["step"] - a["step"],
                  "tokens_per_s": round(tok / span, 1), "step_s": round(span / (b["step"] - a["step"]), 4),
                  "allreduce_share": round(ar / span, 4), "final_loss": round(b["loss"], 4)}))
PY
}

results="$out/results.jsonl"
for r in $(seq "$rounds"); do
  measure 1rank-1thread 1 1 | tee -a "$results"
  measure 2ranks-1thread 2 1 | tee -a "$results"
  measure 1rank-2threads 1 2 | tee -a "$results"
done
mpirun -np 2 --bind-to core build/bench_allreduce --mb 19.3 --repeats 30
python3 - "$results" <<'PY'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
best = {}
for r in rows:
    best[r["run"]] = max(best.get(r["run"], 0), r["tokens_per_s"])
base = best["1rank-1thread"]
for k, v in best.items():
    print(f"{k:16s} {v:9.1f} tokens/s (best of rounds)  {v / base:5.2f}x one rank, one thread")
shares = [r["allreduce_share"] for r in rows if r["ranks"] > 1]
print(f"all-reduce share of a 2-rank step: {statistics.median(shares) * 100:.1f}% (median of {len(shares)} runs)")
PY
