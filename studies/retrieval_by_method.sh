#!/usr/bin/env bash
# Which position methods keep retrieval past the training length? One small byte-level model per method (alibi,
# rope, t5, none, sinusoidal), trained at L = 512 on TinyStories with a synthetic passkey item over every window
# (`--retrieval-mix 1.0 --retrieval-haystack mixed`: half the items hide the needle in the passkey filler, half
# in TinyStories text; run/retrieval_data.hpp), then:
#   passkey accuracy (docs/RETRIEVAL.md's protocol, the filler haystack) at L, 2L, ..., 16L: 5 depths x 4 trials
#     per length, seed 1 (keys and prompts are a function of the seed, so every model sees the same prompts);
#   needle accuracy, the same prompts with the needle hidden in TinyStories valid.txt (never trained on) instead
#     of the filler sentences (`passkey --haystack`);
#   perplexity on TinyStories valid.txt (nonoverlapping windows, the ALiBi paper's protocol) at L .. 16L;
#   then passkey at 2L .. 16L with the fine-tuning-free extensions: alibi with --alibi-interp auto, Self-Extend
#   (G = T / 256, W = 128) and ReRoPE (W = 256); rope with ntk and yarn (s = T / L), Self-Extend and ReRoPE.
#   (T5's buckets are all one past distance 128, so W = 128 or 256 changes nothing for it: not run.)
# Model: 3 layers, width 128, 4 heads, MLP 512, dropout 0; AdamW lr 2e-3 (warm-up 100, cosine to 10%), batch 8
# windows of 512 bytes, 2,000 steps (8.2 M tokens), seed 1337. Results: docs/RESULTS.md; runs and JSON under
# runs/retrieval-by-method/ (a finished piece is kept: rerun to continue; the record without weights is published
# with studies/retrieval_by_method_publish.sh).
# rope-filler: rope trained the same way but with every item's needle in the filler sentences
# (`--retrieval-haystack filler`, the setting in which tests/run's small rope model forms the copy circuit), since
# rope with the mixed haystack did not retrieve at L within 3,000 steps.
# Usage: studies/retrieval_by_method.sh [DATA_DIR] [METHODS...]   (default ../shared/data, all methods; a method
# <position>-filler trains <position> with the filler haystack). STRETCH=path picks the binary (default
# build/stretch), THREADS=n the training threads (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
shift || true
METHODS=("$@")
[ ${#METHODS[@]} -gt 0 ] || METHODS=(alibi rope t5 none sinusoidal rope-filler)
S=${STRETCH:-build/stretch}
OUT=runs/retrieval-by-method
L=512
mkdir -p "$OUT"
for m in "${METHODS[@]}"; do
  R="$OUT/$m"
  position=${m%-filler} haystack=mixed
  [ "$position" != "$m" ] && haystack=filler
  if ! grep -q '"final":true' "$R/metrics.jsonl" 2>/dev/null; then
    resume=()
    [ -e "$R/checkpoints/latest" ] && resume=(--resume)
    /usr/bin/time -v -o "$OUT/$m.time" $S train --text "$DATA/tinystories/train.txt" --out "$R" --position "$position" \
      --layers 3 --width 128 --heads 4 --length $L --batch 8 --steps 2000 --lr 2e-3 --dropout 0 ${THREADS:+--threads $THREADS} \
      --retrieval-mix 1.0 --retrieval-haystack $haystack --eval-interval 500 --ckpt-interval 250 "${resume[@]}" --quiet |
      tee "$OUT/$m.train.txt"
  fi
  [ -f "$OUT/passkey-$m.json" ] ||
    { $S passkey "$R" --up-to 16x --trials 4 --seed 1 --json "$OUT/passkey-$m.json.tmp" --csv "$OUT/passkey-$m.csv" |
        tee "$OUT/passkey-$m.txt" && mv "$OUT/passkey-$m.json.tmp" "$OUT/passkey-$m.json"; }
  [ -f "$OUT/needle-$m.json" ] ||
    { $S passkey "$R" --up-to 16x --trials 4 --seed 1 --haystack "$DATA/tinystories/valid.txt" \
        --json "$OUT/needle-$m.json.tmp" --csv "$OUT/needle-$m.csv" | tee "$OUT/needle-$m.txt" &&
        mv "$OUT/needle-$m.json.tmp" "$OUT/needle-$m.json"; }
  [ -f "$OUT/ppl-$m.json" ] ||
    { $S eval "$R" --text "$DATA/tinystories/valid.txt" --up-to 16x --json "$OUT/ppl-$m.json.tmp" |
        tee "$OUT/ppl-$m.txt" && mv "$OUT/ppl-$m.json.tmp" "$OUT/ppl-$m.json"; }
done

# A method that does not retrieve at L after the 2,000 steps (under half of the 20 trials at L) has no horizon to
# measure: it is trained 1,000 steps more (a fine-tune from its final weights, same data and mix, lr 1e-3, warm-up
# 50), as <m>-more, and measured the same way. rope-filler, still under half after that but copying about half of
# the key's digits (0.28 of them after 2,000 steps, 0.48 after 3,000; chance about 0.1), is trained 2,000 steps
# more again (<m>-more2, from <m>-more, the same settings). The extra budget is reported beside its results.
more_stage() {  # FROM NAME STEPS HAYSTACK: the stage, then passkey, needle and perplexity as for the methods
  local from=$1 name=$2 steps=$3 haystack=$4 R="$OUT/$2" resume=()
  if ! grep -q '"final":true' "$R/metrics.jsonl" 2>/dev/null; then
    [ -e "$R/checkpoints/latest" ] && resume=(--resume)
    /usr/bin/time -v -o "$OUT/$name.time" $S finetune "$from" --text "$DATA/tinystories/train.txt" --out "$R" \
      --batch 8 --steps "$steps" --lr 1e-3 --warmup 50 --retrieval-mix 1.0 --retrieval-haystack "$haystack" \
      ${THREADS:+--threads $THREADS} --eval-interval 500 --ckpt-interval 250 "${resume[@]}" --quiet |
      tee "$OUT/$name.train.txt"
  fi
  [ -f "$OUT/passkey-$name.json" ] ||
    { $S passkey "$R" --up-to 16x --trials 4 --seed 1 --json "$OUT/passkey-$name.json.tmp" \
        --csv "$OUT/passkey-$name.csv" | tee "$OUT/passkey-$name.txt" &&
        mv "$OUT/passkey-$name.json.tmp" "$OUT/passkey-$name.json"; }
  [ -f "$OUT/needle-$name.json" ] ||
    { $S passkey "$R" --up-to 16x --trials 4 --seed 1 --haystack "$DATA/tinystories/valid.txt" \
        --json "$OUT/needle-$name.json.tmp" | tee "$OUT/needle-$name.txt" &&
        mv "$OUT/needle-$name.json.tmp" "$OUT/needle-$name.json"; }
  [ -f "$OUT/ppl-$name.json" ] ||
    { $S eval "$R" --text "$DATA/tinystories/valid.txt" --up-to 16x --json "$OUT/ppl-$name.json.tmp" |
        tee "$OUT/ppl-$name.txt" && mv "$OUT/ppl-$name.json.tmp" "$OUT/ppl-$name.json"; }
}
below_half_at_L() {  # NAME: its passkey accuracy at L is under 50 %
  python3 -c "import json,sys; r=json.load(open('$OUT/passkey-$1.json'))['models'][0]['accuracy_by_length'][0]; \
sys.exit(0 if r['accuracy'] < 0.5 else 1)"
}
for m in "${METHODS[@]}"; do
  [ -f "$OUT/passkey-$m.json" ] || continue
  below_half_at_L "$m" || continue
  haystack=mixed
  [ "${m%-filler}" != "$m" ] && haystack=filler
  more_stage "$OUT/$m" "$m-more" 1000 $haystack
  [ "$m" = rope-filler ] && below_half_at_L "$m-more" && more_stage "$OUT/$m-more" "$m-more2" 2000 $haystack
done

# Curriculum: the filler-trained models that retrieve at L (rope-filler-more2, none-filler-more) never saw a needle
# in text, and the mixed haystack from scratch did not form their copy circuit. So each is trained 1,000 steps more
# with the mixed haystack from its final weights (<position>-filler-mixed), to ask whether the circuit, once formed,
# carries over to a needle in text and past L.
for m in rope-filler-more2 none-filler-more; do
  [ -f "$OUT/passkey-$m.json" ] || continue
  more_stage "$OUT/$m" "${m%%-filler*}-filler-mixed" 1000 mixed
done

ext_flags() {  # extension T -> flags at length T (L = 512)
  case $1 in
    alibi-interp) echo "--alibi-interp auto" ;;
    self-extend) echo "--self-extend $(($2 / 256)),128" ;;
    rerope) echo "--rerope 256" ;;
    ntk|yarn) echo "--rope-scaling $1:$(($2 / L))" ;;
  esac
}
for m in alibi rope rope-filler; do
  [ -d "$OUT/$m/checkpoints" ] || continue
  exts=(self-extend rerope)
  [ "$m" = alibi ] && exts=(alibi-interp "${exts[@]}")
  [ "${m%-filler}" = rope ] && exts=(ntk yarn "${exts[@]}")
  model="$OUT/$m"
  [ -f "$OUT/passkey-$m-more.json" ] && model="$OUT/$m-more"
  [ -f "$OUT/passkey-$m-more2.json" ] && model="$OUT/$m-more2"
  for e in "${exts[@]}"; do
    for T in 1024 2048 4096 8192; do
      name="ext-$m-$e-$T"
      [ -f "$OUT/$name.json" ] ||
        { $S passkey "$model" --lengths $T --trials 4 --seed 1 $(ext_flags $e $T) --json "$OUT/$name.json.tmp" |
            tee "$OUT/$name.txt" && mv "$OUT/$name.json.tmp" "$OUT/$name.json"; }
    done
  done
done
# perplexity of the alibi model with one extension setting at every length
for e in self-extend rerope; do
  [ -d "$OUT/alibi/checkpoints" ] || break
  case $e in self-extend) f="--self-extend 16,128" ;; rerope) f="--rerope 256" ;; esac
  [ -f "$OUT/ppl-ext-alibi-$e.json" ] ||
    { $S eval "$OUT/alibi" --text "$DATA/tinystories/valid.txt" --up-to 16x $f --json "$OUT/ppl-ext-alibi-$e.json.tmp" |
        tee "$OUT/ppl-ext-alibi-$e.txt" && mv "$OUT/ppl-ext-alibi-$e.json.tmp" "$OUT/ppl-ext-alibi-$e.json"; }
done

# one heat map of every finished model (the trials again: the same prompts and answers as above)
done_models=()
for m in "${METHODS[@]}"; do
  [ -f "$OUT/passkey-$m.json" ] && done_models+=("$OUT/$m")
  [ -f "$OUT/passkey-$m-more.json" ] && done_models+=("$OUT/$m-more")
  [ -f "$OUT/passkey-$m-more2.json" ] && done_models+=("$OUT/$m-more2")
done
[ -f "$OUT/passkey-heatmap.png" ] || [ ${#done_models[@]} -eq 0 ] ||
  $S passkey "${done_models[@]}" --up-to 16x --trials 4 --seed 1 --plot "$OUT/passkey-heatmap.png" > /dev/null
echo "done: python3 studies/retrieval_by_method_tables.py prints the tables"
