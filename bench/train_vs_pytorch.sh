#!/usr/bin/env bash
# Training throughput, stretch vs the PyTorch peer, in one invocation (same config, same thread count,
# threads pinned). The two are run alternately ROUNDS times (default 2) and compared on the median step time
# of all their steps, which resists this shared machine's noise. Prints the JSON lines and the ratio.
#   bench/train_vs_pytorch.sh [methods...]      (default: alibi sinusoidal rope)
# Needs: build/bench_train (scripts/build.sh), Debian's python3-torch, libtcmalloc-minimal4,
# libopenblas0-openmp (the peer at its best, see bench/peer_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
steps=${STEPS:-20}
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(alibi sinusoidal rope)
rounds=${ROUNDS:-2}
for m in "${methods[@]}"; do
  lines=()
  for r in $(seq "$rounds"); do
    ours=$(OMP_NUM_THREADS=$threads OMP_PROC_BIND=true OMP_PLACES=cores build/bench_train --position "$m" --steps "$steps")
    peer=$(bench/peer_env.sh /usr/bin/python3 bench/peer_train.py --position "$m" --threads "$threads" --steps "$steps")
    echo "$ours"
    echo "$peer"
    lines+=("$ours" "$peer")
  done
  python3 - "${lines[@]}" <<'PY'
import json, statistics, sys
rows = [json.loads(x) for x in sys.argv[1:]]
ours = statistics.median(r["tokens_per_s_median"] for r in rows if r.get("impl") == "stretch")
peer = statistics.median(r["tokens_per_s_median"] for r in rows if r.get("peer") == "pytorch")
print(f"{rows[0]['position']}: stretch {ours:.0f} tok/s, pytorch {peer:.0f} tok/s (medians), ratio {ours / peer:.2f}x")
PY
done
