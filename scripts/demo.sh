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
  deb_dir=$(mktemp -d)
  trap 'rm -rf "$deb_dir"' EXIT
  if ! (cd "$deb_dir" && apt-get download r-cran-janeaustenr >/dev/null 2>&1); then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -q >/dev/null
    (cd "$deb_dir" && apt-get download r-cran-janeaustenr >/dev/null)
  fi
  dpkg-deb -x "$deb_dir"/r-cran-janeaustenr_*_all.deb "$deb_dir/x"
  build/stretch corpus janeausten --data-dir "$deb_dir/x/usr/lib/R/site-library/janeaustenr/data" --out data/austen.txt
fi

export OMP_PROC_BIND="${OMP_PROC_BIND:-true}" OMP_PLACES="${OMP_PLACES:-cores}"
run=runs/default-alibi
resume=()
if [ -d "$run/checkpoints" ]; then resume=(--resume); fi
build/stretch train --text data/austen.txt --out "$run" --position alibi \
  --layers 4 --width 256 --heads 8 --length 256 --batch 16 --steps 1200 --lr 2e-3 --warmup 100 \
  --eval-interval 300 --ckpt-interval 300 "${resume[@]}"
