#!/usr/bin/env bash
# Long-context training: tokens/s and peak memory of one training step (forward, backward, AdamW) of the
# reference config (byte vocabulary, 6 layers, width 256, 8 heads, MLP 1024, ALiBi) at several lengths T with
# about 4,096 tokens per step (batch 4096 / T, at least 1), for
#   stretch tiled         flash-style attention (memory linear in T; kernels/attention_tiled.hpp)
#   stretch materialized  the (B, NH, T, T) probabilities kept for the backward pass
#   pytorch               bench/peer_train.py, materialized attention (Debian's PyTorch at its best, peer_env.sh)
# each in its own process (peak RSS is per process), alternating, in one invocation.
#   bench/long_context_train.sh [T...]          (default: 256 1024 4096 8192)
# Environment: STEPS (default 4), THREADS (default 2), PEER_PYTHON (default /usr/bin/python3), SKIP_PEER_ABOVE
# (default 4096: longer lengths skip the peer, whose attention needs ~B*NH*T^2*4 bytes per tensor it keeps per
# layer), SKIP_MATERIALIZED_ABOVE (default 4096).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
steps=${STEPS:-4}
peer_py=${PEER_PYTHON:-/usr/bin/python3}
lengths=("$@")
[ ${#lengths[@]} -gt 0 ] || lengths=(256 1024 4096 8192)
export OMP_NUM_THREADS=$threads OMP_PROC_BIND=true OMP_PLACES=cores
for T in "${lengths[@]}"; do
  B=$((4096 / T))
  [ "$B" -ge 1 ] || B=1
  build/bench_train --position alibi --length "$T" --batch "$B" --steps "$steps" --warmup 1 --attention tiled
  if [ "$T" -le "${SKIP_MATERIALIZED_ABOVE:-4096}" ]; then
    build/bench_train --position alibi --length "$T" --batch "$B" --steps "$steps" --warmup 1 --attention materialized
  fi
  if [ "$T" -le "${SKIP_PEER_ABOVE:-4096}" ]; then
    bench/peer_env.sh "$peer_py" bench/peer_train.py --position alibi --threads "$threads" --seq "$T" --batch "$B" \
      --steps "$steps" --warmup 1 || echo "{\"peer\":\"pytorch\",\"T\":$T,\"error\":\"failed (exit $?)\"}"
  fi
done
