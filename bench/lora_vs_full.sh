#!/usr/bin/env bash
# LoRA against full fine-tuning of the same model, on this machine: time per step and peak memory of
#   full     stretch finetune BASE                                  (every weight, AdamW moments for all)
#   lora     stretch finetune BASE --lora 8 (q,k,v,o)               (the base frozen: no weight gradients, no moments)
#   lora-all stretch finetune BASE --lora 8 --lora-targets q,k,v,o,gate,up,down --train-also embed,norm
# for a llama-architecture model of LAYERS x WIDTH (default 16 x 1024, GQA 16/4 heads, MLP 2816, byte vocabulary:
# 218M parameters) at T = 512, batch 1, fp32, 2 threads, alternating ROUNDS times. Time per step is measured from
# metrics.jsonl between step SKIP and the last (start-up, the first steps and the final validation excluded); peak
# memory is /usr/bin/time's maximum resident set of the whole process.
#   bench/lora_vs_full.sh                  (LAYERS=16 WIDTH=1024 STEPS=8 SKIP=3 ROUNDS=2; DATA=../shared/data)
# Prints one line per run, then the medians and the ratios LoRA / full.
set -euo pipefail
cd "$(dirname "$0")/.."
layers=${LAYERS:-16}
width=${WIDTH:-1024}
steps=${STEPS:-8}
skip=${SKIP:-3}
rounds=${ROUNDS:-2}
text=${DATA:-../shared/data}/tinystories/train.txt
[ -f "$text" ] || { echo "bench/lora_vs_full.sh: missing $text (../shared/data beside the repository)" >&2; exit 3; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
head -c 6000 "$text" > "$out/valid.txt"  # the final validation pass stays short
export OMP_PROC_BIND=true OMP_PLACES=cores
common=(--text "$text" --valid-text "$out/valid.txt" --cache-dir "$out/cache" --log-interval 1 --eval-interval 0
        --ckpt-interval 0 --quiet --threads 2 --batch 1 --length 512)
build/stretch train "${common[@]}" --arch llama --layers "$layers" --width "$width" --heads 16 --kv-heads 4 \
  --mlp $((width * 11 / 4)) --steps 1 --warmup 0 --out "$out/base" > /dev/null
lscpu | grep -m1 "Model name" | sed 's/  */ /g'

measure() {  # name [finetune flags...]
  local name=$1 dir="$out/$1-$RANDOM"
  shift
  /usr/bin/time -f "%M" -o "$dir.rss" build/stretch finetune "$out/base" "${common[@]}" --steps "$steps" \
    --warmup 1 --lr 1e-4 --out "$dir" "$@" > /dev/null
  python3 - "$name" "$dir/metrics.jsonl" "$(cat "$dir.rss")" "$skip" <<'EOF'
import json, sys
name, path, rss_kb, skip = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = [json.loads(l) for l in open(path)]
t = {r["step"]: r["elapsed_s"] for r in rows if "elapsed_s" in r}
last = max(t)
print(json.dumps({"run": name, "s_per_step": (t[last] - t[skip]) / (last - skip), "peak_rss_mb": rss_kb / 1024}))
EOF
}

for r in $(seq "$rounds"); do
  measure full
  measure lora --lora 8
  measure lora-all --lora 8 --lora-targets q,k,v,o,gate,up,down --train-also embed,norm
done | tee "$out/runs.jsonl"
python3 - "$out/runs.jsonl" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
med = {n: {k: statistics.median(r[k] for r in runs if r["run"] == n) for k in ("s_per_step", "peak_rss_mb")}
       for n in ("full", "lora", "lora-all")}
for n, m in med.items():
    print(f"{n:9s} {m['s_per_step']:.3f} s/step ({m['s_per_step'] / med['full']['s_per_step']:.2f} x full), "
          f"peak RSS {m['peak_rss_mb']:.0f} MB ({m['peak_rss_mb'] / med['full']['peak_rss_mb']:.2f} x full)")
EOF
