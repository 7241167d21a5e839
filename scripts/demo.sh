#!/usr/bin/env bash
# README's first command: the main job on the embedded default corpus.
# Installs what is needed, builds, fetches Jane Austen's novels from Debian's r-cran-janeaustenr (no R needed),
# trains a small ALiBi model and a sinusoidal one with the same settings and budget at length L = 128, prints
# the ALiBi model's validation perplexity, then evaluates both at L, 2L, 4L, 8L and 16L: the extrapolation table
# and its plot (runs/extrapolation.png), and how far apart the two are at L. Re-running continues (or just
# re-reports) the same runs.
#
# The settings (README, "The main job's settings"): 4 layers of width 128, 4 heads, 2,000 steps of 16 windows
# (4.1 M tokens, a little over one epoch), lr 3e-3 with 100 warm-up steps, and fairseq's unit-variance embeddings
# (--embed-scale sqrt), as in the ALiBi paper's models. A small model trained for many steps, not a larger one for
# few: sinusoidal positions need a few hundred steps to leave the bigram plateau that ALiBi skips (docs/RESULTS.md),
# and GPT-2's 0.02-sized embeddings under unit-amplitude sinusoids keep it there for most of a short run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD_TARGETS=stretch scripts/build.sh

mkdir -p data runs
if [ ! -s data/austen.txt ]; then
  build/stretch corpus janeausten --data-dir "$(scripts/fetch-austen.sh)" --out data/austen.txt
fi
# the last 60,000 bytes (part of Persuasion) are held out for validation and the extrapolation table
if [ ! -s data/austen-valid.txt ]; then
  head -c -60000 data/austen.txt > data/austen-train.txt.tmp && mv data/austen-train.txt.tmp data/austen-train.txt
  tail -c 60000 data/austen.txt > data/austen-valid.txt.tmp && mv data/austen-valid.txt.tmp data/austen-valid.txt
fi

export OMP_PROC_BIND="${OMP_PROC_BIND:-true}" OMP_PLACES="${OMP_PLACES:-cores}"
for method in alibi sinusoidal; do
  run=runs/demo-$method
  resume=()
  if [ -d "$run/checkpoints" ]; then resume=(--resume); fi
  echo "== training $method (L = 128) =="
  build/stretch train --text data/austen-train.txt --valid-text data/austen-valid.txt --out "$run" \
    --position $method --layers 4 --width 128 --heads 4 --length 128 --batch 16 --steps 2000 --lr 3e-3 \
    --warmup 100 --embed-scale sqrt --eval-interval 500 --eval-tokens 16384 --ckpt-interval 500 "${resume[@]}"
done

echo "== extrapolation: perplexity on held-out text at L, 2L, 4L, 8L, 16L (nonoverlapping) =="
build/stretch eval runs/demo-alibi runs/demo-sinusoidal --text data/austen-valid.txt --up-to 16x \
  --max-tokens 24576 --json runs/extrapolation.json --csv runs/extrapolation.csv --plot runs/extrapolation.png
# at L the two should be close (the paper's models are within about 2%); past L only ALiBi should hold
awk -F, '$2 == "alibi" { a[$4] = $8 } $2 == "sinusoidal" { s[$4] = $8 }
  END { printf "sinusoidal / ALiBi perplexity: %.3f at L = 128, %.3f at 2L, %.3f at 16L\n", s[128] / a[128],
        s[256] / a[256], s[2048] / a[2048] }' runs/extrapolation.csv
