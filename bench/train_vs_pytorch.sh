#!/usr/bin/env bash
# Training throughput, stretch vs the PyTorch peer, in one invocation (same config, same thread count,
# threads pinned). Prints both JSON lines and the ratio per position method.
#   bench/train_vs_pytorch.sh [methods...]      (default: alibi sinusoidal rope)
# Needs: build/bench_train (scripts/build.sh), Debian's python3-torch, libtcmalloc-minimal4,
# libopenblas0-openmp (the peer at its best, see bench/peer_env.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
steps=${STEPS:-20}
methods=("$@")
[ ${#methods[@]} -gt 0 ] || methods=(alibi sinusoidal rope)
for m in "${methods[@]}"; do
  ours=$(OMP_NUM_THREADS=$threads OMP_PROC_BIND=true OMP_PLACES=cores build/bench_train --position "$m" --steps "$steps")
  peer=$(bench/peer_env.sh /usr/bin/python3 bench/peer_train.py --position "$m" --threads "$threads" --steps "$steps")
  echo "$ours"
  echo "$peer"
  python3 - "$ours" "$peer" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"{a['position']}: stretch {a['tokens_per_s']:.0f} tok/s, pytorch {b['tokens_per_s']:.0f} tok/s, "
      f"ratio {a['tokens_per_s'] / b['tokens_per_s']:.2f}x")
PY
done
