#!/usr/bin/env bash
# stories260K through Hugging Face's format (run by hand; needs PyPI's torch, transformers, sentencepiece, protobuf
# and ../shared/data): tools/llama2c_to_hf.py converts stories260K.bin + tok512.model into a LlamaForCausalLM folder
# with transformers itself; `stretch import hf` of that folder must give the NLL table of `stretch import llama2c`
# (../shared/REFERENCE.md's protocol: TinyStories valid split at blank lines, BOS per story, chunked windows) for
# every scaling, and the same greedy text.
#   tools/check_hf_stories260k.sh [OUT]      (default /tmp/stretch-hf-stories260k)
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data
OUT=${1:-/tmp/stretch-hf-stories260k}
S=build/stretch
rm -rf "$OUT"; mkdir -p "$OUT"
python3 tools/llama2c_to_hf.py $D/llama2c/stories260K.bin $D/llama2c/tok512.model "$OUT/hf" > /dev/null 2>&1
$S import hf "$OUT/hf" --out "$OUT/from-hf" > /dev/null
$S import llama2c $D/llama2c/stories260K.bin --tokenizer $D/llama2c/tok512.bin --out "$OUT/from-llama2c" > /dev/null
status=0
for scaling in none linear:2 ntk:2 yarn:2 linear:4 ntk:4 yarn:4; do
  for src in from-llama2c from-hf; do
    $S eval "$OUT/$src" --text $D/tinystories/valid.txt --doc-sep '\n\n' --protocol chunked --lengths 256,512,1024,2048 \
      --rope-scaling "$scaling" --cache-dir "$OUT/cache" --json "$OUT/$src.$scaling.json" > /dev/null
  done
  python3 - "$OUT/from-llama2c.$scaling.json" "$OUT/from-hf.$scaling.json" "$scaling" <<'PY' || status=1
import json, sys
a, b = (json.load(open(p))["models"][0]["results"] for p in sys.argv[1:3])
rows = [(x["length"], x["nll"], y["nll"], x["tokens"], y["tokens"]) for x, y in zip(a, b)]
ok = all(abs(p - q) < 1e-5 and n == m for _, p, q, n, m in rows)
print(f"{sys.argv[3]:9s} " + "  ".join(f"T={t}: {p:.4f} / {q:.4f}" for t, p, q, _, _ in rows) + ("  same" if ok else "  DIFFER"))
sys.exit(0 if ok else 1)
PY
done
a=$($S generate "$OUT/from-llama2c" -p "Once upon a time" -n 60 -t 0 2>/dev/null)
b=$($S generate "$OUT/from-hf" -p "Once upon a time" -n 60 -t 0 2>/dev/null)
[ "$a" = "$b" ] && echo "greedy text: the same" || { echo "greedy text DIFFERS"; status=1; }
exit $status
