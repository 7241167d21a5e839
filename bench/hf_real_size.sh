#!/usr/bin/env bash
# A 1B-class Hugging Face model end to end (issue: real models in and out): TinyLlama-1.1B's shapes with random BF16
# weights in 1 GB shards (bench/make_tinyllama.py, made once into $MODEL), then in one invocation:
#   stretch import hf   wall time and peak RSS (target: under 1.2x the fp32 weights, 4.4 GB)
#   stretch eval        one window of T = 4096 tokens with --rope-scaling yarn:2 (past the trained 2048)
#   stretch generate    greedy, 32 tokens after a 128-token prompt
#   the PyTorch 2.x peer (bench/peer_hf.py: transformers, float32, SDPA) on the same folder, text and settings
#   bench/hf_real_size.sh                 (MODEL=/tmp/tinyllama-random RUN=/tmp/tinyllama-run TEXT=... THREADS=2)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-/tmp/tinyllama-random}
RUN=${RUN:-/tmp/tinyllama-run}
TEXT=${TEXT:-../shared/data/wikitext/raw/wiki.valid.raw}
THREADS=${THREADS:-2}
PY=${PEER_PYTHON:-python3}
export OMP_NUM_THREADS=$THREADS OMP_PROC_BIND=true OMP_PLACES=cores
[ -f "$MODEL/config.json" ] || "$PY" bench/make_tinyllama.py "$MODEL"
echo "host: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(du -sh "$MODEL" | cut -f1) of BF16 shards"
rm -rf "$RUN"
measure() {  # label, command...: prints wall seconds and peak RSS (MB) of the command
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o /tmp/hf_real_size.time "$@" > /tmp/hf_real_size.out 2>&1 || { cat /tmp/hf_real_size.out; exit 1; }
  read -r secs kb < /tmp/hf_real_size.time
  echo "$label: ${secs} s, peak RSS $((kb / 1024)) MB"
}
measure "stretch import hf" build/stretch import hf "$MODEL" --out "$RUN"
grep -E "^imported" /tmp/hf_real_size.out
measure "stretch load (generate 1 token after a 1-word prompt)" build/stretch generate "$RUN" -n 1 -t 0 --prompt "The"
measure "stretch eval T=4096 yarn:2" build/stretch eval "$RUN" --text "$TEXT" --lengths 4096 --max-tokens 4096 \
  --rope-scaling yarn:2 --batch-tokens 4096 --json /tmp/hf_real_size.json
grep -E "tok/s|tokens/s|4096" /tmp/hf_real_size.out | head -5
measure "stretch generate (128-token prompt, 32 greedy tokens)" build/stretch generate "$RUN" -n 32 -t 0 \
  --ignore-eos --prompt "$(head -c 600 "$TEXT")"
tail -n 3 /tmp/hf_real_size.out
echo "peer:"
/usr/bin/time -f "%e %M" -o /tmp/hf_real_size.time "$PY" bench/peer_hf.py "$MODEL" --text "$TEXT" --T 4096 --yarn 2 \
  --threads "$THREADS" --decode 32 --prompt 128
read -r secs kb < /tmp/hf_real_size.time
echo "peer total: ${secs} s, peak RSS $((kb / 1024)) MB"
