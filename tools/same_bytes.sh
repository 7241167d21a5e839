#!/usr/bin/env bash
# Behaviour-preserving refactors: runs the same small jobs with two stretch binaries and compares what they write,
# byte for byte. Training (every position method and family, GQA, dropout, bf16, log-n, a window, shifted
# positions, LoRA), evaluation (nonoverlapping and sliding, with the extensions), generation (greedy and sampled,
# sliding caches, attention sinks, Self-Extend) and passkey.
# Usage: tools/same_bytes.sh OLD_BINARY NEW_BINARY [TEXT_FILE]   (default text: ../shared/data/tinystories/valid.txt)
# Prints one line per job and "all same" or the jobs that differ; exits 1 when any differs. About 2 minutes.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY [TEXT_FILE]" >&2; exit 2; }
OLD=$(realpath "$1") NEW=$(realpath "$2")
TEXT=$(realpath "${3:-$(dirname "$0")/../../shared/data/tinystories/valid.txt}")
[ -f "$TEXT" ] || { echo "$0: no text file $TEXT" >&2; exit 2; }
W=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "work folder: $W" >&2 || trap 'rm -rf "$W"' EXIT
head -c 300000 "$TEXT" > "$W/train.txt"
tail -c 60000 "$TEXT" > "$W/valid.txt"
export STRETCH_CACHE="$W/cache" OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
differ=()

# name then train flags; each trains 12 steps of a 2-layer width-64 model
models=(
  "gpt-sinusoidal|--position sinusoidal"
  "gpt-learned|--position learned --dropout 0.1"
  "gpt-alibi|--position alibi --logn full"
  "gpt-t5|--position t5 --embed-norm --activation gelu --no-bias"
  "gpt-none|--position none --attn-window 24"
  "gpt-alibi-bf16|--position alibi --precision bf16"
  "gpt-alibi-tiled|--position alibi --attention tiled"
  "llama-rope|--arch llama --position rope --kv-heads 2 --qkv-bias"
  "llama-rope-shifted|--arch llama --position rope --positions shifted:256 --dropout 0.1 --logn beyond"
)
run_both() {  # NAME COMMAND...: runs COMMAND with OLD and NEW (the word BIN replaced), output in $W/{old,new}/NAME
  local name=$1
  shift
  for side in old new; do
    local bin=$OLD
    [ $side = new ] && bin=$NEW
    local args=()
    for a in "$@"; do args+=("${a//BIN/$bin}"); done
    args=("${args[@]//SIDE/$W/$side}")
    mkdir -p "$W/$side"
    local rc=0
    "${args[@]}" > "$W/$side/$name.out" 2> "$W/$side/$name.err" || rc=$?
    echo $rc > "$W/$side/$name.rc"
  done
}
same_files() {  # JOB FILE...: the files (relative to each side) are equal, and JOB exited 0 on both sides
  local name=$1 ok=1
  shift
  if [ "$(cat "$W/old/$name.rc" "$W/new/$name.rc")" != "$(printf '0\n0')" ]; then
    echo "FAILED  $name (a job exited non-zero: $W/{old,new}/$name.err)"
    differ+=("$name")
    return
  fi
  for f in "$@"; do cmp -s "$W/old/$f" "$W/new/$f" || ok=0; done
  if [ $ok = 1 ]; then echo "same    $name"; else echo "DIFFERS $name"; differ+=("$name"); fi
}
canon() {  # FILE OUT SIDE_DIR: JSON or JSON lines without what differs from run to run (times, speeds, memory; paths as
           # relative to the side's folder)
  python3 -c "import json,re,sys,os
drop=re.compile(r'(_s$|per_s|time|seconds|elapsed|rss|memory|_mb$|bytes_peak|date|host|binary|threads|path|dir|out$)')
def strip(o):
    if isinstance(o,dict): return {k:strip(v) for k,v in o.items() if not drop.search(k)}
    if isinstance(o,list): return [strip(v) for v in o]
    if isinstance(o,str): return o.replace(sys.argv[2],'SIDE')
    return o
t=open(sys.argv[1]).read()
try: docs=[json.loads(t)]
except ValueError: docs=[json.loads(l) for l in t.splitlines() if l.strip()]
print('\\n'.join(json.dumps(strip(d),sort_keys=True) for d in docs))" "$1" "$3" > "$2"
}
run_files() {  # RUN folder -> its weights and optimizer state, and its metrics without wall times
  local r=$1
  for side in old new; do canon "$W/$side/$r/metrics.jsonl" "$W/$side/$r.metrics" "$W/$side"; done
  local files=("$r.metrics")
  while IFS= read -r f; do
    f=${f#"$W/old/"}
    if [ "${f%.json}" != "$f" ]; then
      for side in old new; do canon "$W/$side/$f" "$W/$side/$f.cmp" "$W/$side"; done
      f=$f.cmp
    fi
    files+=("$f")
  done < <(find "$W/old/$r/checkpoints" -type f -name '*.json' -o -type f -name '*.safetensors' | sort)
  echo "${files[@]}"
}

for entry in "${models[@]}"; do
  name=${entry%%|*} flags=${entry#*|}
  # shellcheck disable=SC2086
  run_both "train-$name" BIN train --text "$W/train.txt" --out SIDE/$name --layers 2 --width 64 --heads 4 --length 48 \
    --batch 4 --steps 12 --eval-interval 6 --ckpt-interval 6 --seed 7 --quiet $flags
  # shellcheck disable=SC2046
  same_files "train-$name" $(run_files "$name")
done

# LoRA fine-tune (q,k,v,o,up,down with dropout) of a trained model
run_both lora BIN finetune SIDE/llama-rope --text "$W/train.txt" --out SIDE/lora --steps 6 --batch 4 --lora 4 \
  --lora-targets q,k,v,o,gate,up,down --lora-dropout 0.1 --train-also norm --eval-interval 3 --ckpt-interval 3 --quiet
# shellcheck disable=SC2046
same_files lora $(run_files lora)

# evaluation: every model, nonoverlapping and sliding; the extensions on rope and alibi
for entry in "${models[@]}"; do
  name=${entry%%|*}
  extra=()
  case $name in gpt-learned) extra=(--lengths 48) ;; *) extra=(--up-to 4x) ;; esac
  run_both "eval-$name" BIN eval SIDE/$name --text "$W/valid.txt" "${extra[@]}" --json SIDE/eval-$name.json
  run_both "evals-$name" BIN eval SIDE/$name --text "$W/valid.txt" "${extra[@]}" --protocol sliding --stride 16 --json SIDE/evals-$name.json
done
run_both eval-se BIN eval SIDE/llama-rope --text "$W/valid.txt" --up-to 4x --self-extend 4,16 --json SIDE/eval-se.json
run_both eval-rr BIN eval SIDE/llama-rope --text "$W/valid.txt" --up-to 4x --rerope 16,4 --json SIDE/eval-rr.json
run_both eval-yarn BIN eval SIDE/llama-rope --text "$W/valid.txt" --up-to 4x --rope-scaling yarn:4 --json SIDE/eval-yarn.json
run_both eval-ase BIN eval SIDE/gpt-alibi --text "$W/valid.txt" --up-to 4x --self-extend 4,16 --json SIDE/eval-ase.json
# eval --keep streams every window through the cached decoder: its logits, to the last bit (generated text below
# is not that sensitive: a last-bit change rarely moves a sampled token)
run_both eval-keep BIN eval SIDE/llama-rope --text "$W/valid.txt" --lengths 96 --keep 4 --ctx 40 --json SIDE/eval-keep.json
run_both eval-keep-se BIN eval SIDE/llama-rope --text "$W/valid.txt" --lengths 96 --keep 4 --ctx 40 --self-extend 4,16 \
  --json SIDE/eval-keep-se.json
run_both eval-keep-alibi BIN eval SIDE/gpt-alibi --text "$W/valid.txt" --lengths 96 --keep 4 --ctx 40 \
  --json SIDE/eval-keep-alibi.json
run_both eval-keep-t5 BIN eval SIDE/gpt-t5 --text "$W/valid.txt" --lengths 96 --keep 4 --ctx 40 --json SIDE/eval-keep-t5.json
run_both eval-keep-logn BIN eval SIDE/llama-rope-shifted --text "$W/valid.txt" --lengths 96 --keep 4 --ctx 40 \
  --json SIDE/eval-keep-logn.json
for j in "$W"/old/eval*.json; do
  b=$(basename "$j" .json)
  for side in old new; do canon "$W/$side/$b.json" "$W/$side/$b.cmp" "$W/$side"; done
  same_files "$b" "$b.cmp"
done

# generation: greedy and sampled, past the cache (sliding), sinks, Self-Extend
gen() {  # NAME MODEL FLAGS...
  local name=$1 model=$2
  shift 2
  run_both "gen-$name" BIN generate "SIDE/$model" -p "Once upon a time" --seed 3 "$@"
  same_files "gen-$name" "gen-$name.out"
}
gen alibi-greedy gpt-alibi -n 120 -t 0
gen alibi-slide gpt-alibi -n 120 --ctx 40
gen t5-slide gpt-t5 -n 120 --ctx 40 --top-k 20
gen none-window gpt-none -n 120 -t 0.5
gen sinusoidal gpt-sinusoidal -n 120 --ctx 150 -t 0
gen learned gpt-learned -n 30 --ctx 48
gen rope-gqa llama-rope -n 120 --ctx 150 -t 0
gen rope-sinks llama-rope -n 120 --ctx 40 --keep 4
gen rope-se llama-rope -n 120 --ctx 150 --self-extend 4,16 -t 0
gen rope-rr llama-rope -n 120 --rerope 16 --ctx 150
gen alibi-se gpt-alibi -n 120 --self-extend 4,16 --ctx 150
gen rope-shifted llama-rope-shifted -n 120 --ctx 150 -t 0

run_both passkey BIN passkey SIDE/gpt-alibi SIDE/llama-rope --lengths 256,512 --trials 1 --seed 1 --json SIDE/passkey.json
for side in old new; do canon "$W/$side/passkey.json" "$W/$side/passkey.cmp" "$W/$side"; done
same_files passkey passkey.cmp

if [ ${#differ[@]} -eq 0 ]; then echo "all same"; else echo "differ: ${differ[*]}"; exit 1; fi
