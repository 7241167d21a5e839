#!/usr/bin/env bash
# README's first command: the main job on the embedded default corpus.
# Installs what is needed, builds, fetches Jane Austen's novels from Debian's r-cran-janeaustenr (no R needed),
# trains a small ALiBi model and a sinusoidal one with the same budget at length L = 128, prints the ALiBi
# model's validation perplexity, then evaluates both at L, 2L, 4L, 8L and 16L: the extrapolation table and
# its plot (runs/extrapolation.png). Re-running continues (or just re-reports) the same runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh

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
  run=runs/default-$method
  resume=()
  if [ -d "$run/checkpoints" ]; then resume=(--resume); fi
  echo "== training $method (L = 128) =="
  build/stretch train --text data/austen-train.txt --valid-text data/austen-valid.txt --out "$run" \
    --position $method --layers 4 --width 256 --heads 8 --length 128 --batch 16 --steps 400 --lr 2e-3 \
    --warmup 40 --eval-interval 200 --eval-tokens 16384 --ckpt-interval 200 "${resume[@]}"
done

echo "== extrapolation: perplexity on held-out text at L, 2L, 4L, 8L, 16L (nonoverlapping) =="
build/stretch eval runs/default-alibi runs/default-sinusoidal --text data/austen-valid.txt --up-to 16x \
  --max-tokens 24576 --json runs/extrapolation.json --csv runs/extrapolation.csv --plot runs/extrapolation.png
