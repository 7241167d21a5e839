#!/usr/bin/env bash
# Decoding at real size against llama.cpp (issue 19): the 1.1B llama of bench/bf16_inference.sh ($RUN, imported from
# $MODEL) in stretch with bf16 weights, and the same Hugging Face weights in llama.cpp as a BF16 GGUF (written once
# by llama.cpp's own convert_hf_to_gguf.py from its source tree), greedy, B = 1, after filling the cache to ctx - new
# tokens; alternating the two for $ROUNDS rounds, medians. The cache: f16 on both sides (llama.cpp's default).
# Outside CI: needs the llama-cpp-python source tree and a llama.cpp built from it (tools/llamacpp_env.sh):
#   LLAMACPP_PY=/path/llama_cpp_python-X LLAMACPP_LIB=/path/build/bin bench/decode_vs_llamacpp.sh
# Also prints build/bench_peak's read bandwidth, to read decode tok/s as GB/s of weights.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-/tmp/tinyllama-random}
RUN=${RUN:-/tmp/tinyllama-run}
GGUF=${GGUF:-/tmp/tinyllama-bf16.gguf}
CTXS=${CTXS:-512 8192}
NEW=${NEW:-32}
ROUNDS=${ROUNDS:-2}
THREADS=${THREADS:-2}
: "${LLAMACPP_PY:?set LLAMACPP_PY to the llama-cpp-python source tree}"
export OMP_NUM_THREADS=$THREADS OMP_PROC_BIND=true OMP_PLACES=cores
[ -f "$MODEL/config.json" ] || python3 bench/make_tinyllama.py "$MODEL"
[ -d "$RUN/checkpoints" ] || build/stretch import hf "$MODEL" --out "$RUN" > /dev/null
[ -f "$GGUF" ] || PYTHONPATH="$LLAMACPP_PY/vendor/llama.cpp/gguf-py" python3 \
  "$LLAMACPP_PY/vendor/llama.cpp/convert_hf_to_gguf.py" "$MODEL" --outtype bf16 --outfile "$GGUF" > /dev/null 2>&1
echo "host: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $THREADS threads"
build/bench_peak --repeats 3 | grep read_bandwidth
for ctx in $CTXS; do
  for r in $(seq "$ROUNDS"); do
    echo "round $r, ctx $ctx"
    build/bench_decode --model "$RUN" --ctx "$ctx" --new "$NEW" --precision bf16 --kv-type f16
    tools/llamacpp_env.sh python3 bench/peer_llamacpp_decode.py "$GGUF" --ctx "$ctx" --new "$NEW" \
      --threads "$THREADS" --kv-type f16
  done
done
