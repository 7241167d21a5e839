#!/usr/bin/env bash
# README's first command: the main job on the embedded default corpus.
# Installs what is needed, builds, fetches Jane Austen's novels from Debian's r-cran-janeaustenr (no R needed),
# trains a small ALiBi model on them and prints its validation perplexity.
# Re-running continues (or just re-reports) the same run in runs/default-alibi.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh

mkdir -p data
if [ ! -s data/austen.txt ]; then
  build/stretch corpus janeausten --data-dir "$(scripts/fetch-austen.sh)" --out data/austen.txt
fi

export OMP_PROC_BIND="${OMP_PROC_BIND:-true}" OMP_PLACES="${OMP_PLACES:-cores}"
run=runs/default-alibi
resume=()
if [ -d "$run/checkpoints" ]; then resume=(--resume); fi
build/stretch train --text data/austen.txt --out "$run" --position alibi \
  --layers 4 --width 256 --heads 8 --length 256 --batch 16 --steps 300 --lr 2e-3 --warmup 30 \
  --eval-interval 100 --ckpt-interval 100 "${resume[@]}"
