#!/usr/bin/env bash
# Long-context evaluation, stretch (tiled attention) vs the PyTorch peer (materialized attention), one process
# per length so each peak RSS is its own: tokens/s and peak RSS at T = 1k, 4k, 16k and the ratios.
#   bench/eval_vs_pytorch.sh [lengths...]     (default: 1024 4096 16384)
# Environment: PEER_ATTN (materialized | lean | sdpa; bench/peer_eval.py says what each is; default materialized),
# PEER_PYTHON (default /usr/bin/python3, Debian's PyTorch, run through bench/peer_env.sh; set it to a python with
# a PyPI torch for sdpa).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
lengths=("$@")
[ ${#lengths[@]} -gt 0 ] || lengths=(1024 4096 16384)
for T in "${lengths[@]}"; do
  ours=$(OMP_NUM_THREADS=$threads OMP_PROC_BIND=true OMP_PLACES=cores build/bench_eval --T "$T")
  echo "$ours"
  if ! peer=$(bench/peer_env.sh "${PEER_PYTHON:-/usr/bin/python3}" bench/peer_eval.py --T "$T" --threads "$threads" \
                --attn "${PEER_ATTN:-materialized}"); then
    echo "T=$T: the PyTorch peer failed (exit status 137 means it was killed for memory)"
    continue
  fi
  echo "$peer"
  python3 - "$ours" "$peer" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f"T={a['T']}: stretch {a['tokens_per_s']:.0f} tok/s {a['peak_rss_mb']:.0f} MB, pytorch {b['tokens_per_s']:.0f} "
      f"tok/s {b['peak_rss_mb']:.0f} MB; speed x{a['tokens_per_s'] / b['tokens_per_s']:.2f}, "
      f"memory x{a['peak_rss_mb'] / b['peak_rss_mb']:.2f}")
PY
done
