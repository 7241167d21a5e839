#!/usr/bin/env bash
# Copies the record of studies/extrapolation.sh's finished runs (no weights) beside docs/RESULTS.md, in the
# study folder's own layout, so it can be read, plotted and committed:
#   <name>/metrics.jsonl  <name>/config.json (the final checkpoint's)  <name>.log  <name>.time
#   eval-<name>-<protocol>.json / .txt
# A run is copied only once its training and both evaluations are done. Copying the record back into a study
# folder (cp -r DEST/. OUT/) lets a study whose folder was lost go on with the runs it lacks: the study skips a
# run whose metrics end with "final" and whose evaluations exist.
#   studies/extrapolation_publish.sh [OUT] [DEST]      (defaults: runs/study docs/results/extrapolation)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/study}
DEST=${2:-docs/results/extrapolation}
mkdir -p "$DEST"
n=0
for dir in "$OUT"/*/; do
  name=$(basename "$dir")
  grep -qs '"final":true' "$dir/metrics.jsonl" || continue
  [ -f "$OUT/eval-$name-nonoverlapping.json" ] && [ -f "$OUT/eval-$name-sliding.json" ] || continue
  mkdir -p "$DEST/$name"
  cp "$dir/metrics.jsonl" "$DEST/$name/"
  latest=$(cat "$dir/checkpoints/latest" 2>/dev/null || true)
  [ -n "$latest" ] && [ -f "$dir/checkpoints/$latest/config.json" ] && cp "$dir/checkpoints/$latest/config.json" "$DEST/$name/"
  for f in "$OUT/$name.log" "$OUT/$name.time" "$OUT"/eval-"$name"-{nonoverlapping,sliding}.{json,txt}; do
    [ -f "$f" ] && cp "$f" "$DEST/"
  done
  n=$((n + 1))
done
echo "published $n finished runs of $OUT to $DEST"
