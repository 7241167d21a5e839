# Shared by studies/stories260k_context.sh and studies/stories260k_lora.sh (sourced after they set S, the stretch
# binary; DATA, the shared data folder; OUT, the run folder; EVAL, the evaluation flags):
#   import_stories260k   llama2.c's stories260K and its tokenizer as $OUT/stories260K (once)
#   ev NAME MODEL LENGTHS [FLAGS...]   an evaluation to $OUT/NAME.json (kept: a finished one is not redone)
import_stories260k() {
  [ -d "$OUT/stories260K/checkpoints" ] ||
    $S import llama2c "$DATA/llama2c/stories260K.bin" --tokenizer "$DATA/llama2c/tok512.bin" --out "$OUT/stories260K"
}

ev() {
  local name=$1 model=$2 lengths=$3
  shift 3
  [ -f "$OUT/$name.json" ] && return 0
  $S eval "$model" "${EVAL[@]}" --lengths "$lengths" --json "$OUT/$name.json.tmp" "$@" | tee "$OUT/$name.txt"
  mv "$OUT/$name.json.tmp" "$OUT/$name.json"
}
