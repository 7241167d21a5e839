#!/usr/bin/env bash
# Inference at real size with the weights kept in bf16 (issue 19): TinyLlama-1.1B's shapes with random weights
# (bench/make_tinyllama.py, made once into $MODEL, imported once into $RUN), then per length T in $LENGTHS one
# window of T tokens of $TEXT with --rope-scaling yarn:(T/2048) past the trained 2048, each in a process of its own
# (wall seconds and peak RSS from /usr/bin/time; tokens/s from the program's own timer):
#   stretch eval, fp32 weights, and --precision bf16 (the matrices kept in bf16 only)
#   the PyTorch 2.x peer (bench/peer_hf.py: transformers, SDPA, the loss over chunks of 1,024 positions), float32
#   and bfloat16
#   bench/bf16_inference.sh                 (MODEL=/tmp/tinyllama-random RUN=/tmp/tinyllama-run LENGTHS="4096 16384"
#                                            PRECISIONS="fp32 bf16" DTYPES="float32 bfloat16": which runs)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-/tmp/tinyllama-random}
RUN=${RUN:-/tmp/tinyllama-run}
TEXT=${TEXT:-../shared/data/wikitext/raw/wiki.valid.raw}
THREADS=${THREADS:-2}
LENGTHS=${LENGTHS:-4096 16384}
PRECISIONS=${PRECISIONS:-fp32 bf16}
DTYPES=${DTYPES:-float32 bfloat16}
PY=${PEER_PYTHON:-python3}
export OMP_NUM_THREADS=$THREADS OMP_PROC_BIND=true OMP_PLACES=cores
[ -f "$MODEL/config.json" ] || "$PY" bench/make_tinyllama.py "$MODEL"
[ -d "$RUN/checkpoints" ] || build/stretch import hf "$MODEL" --out "$RUN" > /dev/null
echo "host: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $THREADS threads"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
measure() {  # label, command...: the command's last output lines, wall seconds and peak RSS (MB)
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$out/time" "$@" > "$out/log" 2>&1 || { cat "$out/log"; exit 1; }
  read -r secs kb < "$out/time"
  echo "$label: ${secs} s wall, peak RSS $((kb / 1024)) MB"
  tail -n 1 "$out/log"
}
for T in $LENGTHS; do
  f=$((T / 2048))
  for p in $PRECISIONS; do
    measure "stretch eval T=$T --precision $p" build/stretch eval "$RUN" --text "$TEXT" --lengths "$T" \
      --max-tokens "$T" --rope-scaling "yarn:$f" --batch-tokens "$T" --precision "$p"
  done
  for d in $DTYPES; do
    measure "PyTorch T=$T $d" "$PY" bench/peer_hf.py "$MODEL" --text "$TEXT" --T "$T" --yarn "$f" \
      --threads "$THREADS" --decode 0 --dtype "$d"
  done
done
