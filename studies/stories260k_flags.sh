# The context flags of each fine-tuning-free method at evaluation length T for stories260K (trained at 512), shared
# by studies/stories260k_retrieval.sh and studies/stories260k_retrieval_finetune.sh (sourced):
#   none; linear / ntk / yarn with s = T / 512; Self-Extend with G = T / 256, W = 128; ReRoPE W = 256; leaky
#   ReRoPE W = 256, K = s.
flags() {  # method T -> the context flags of that method at length T
  local s=$(($2 / 512))
  case $1 in
    none) ;;
    linear|ntk|yarn) [ "$s" -gt 1 ] && echo "--rope-scaling $1:$s" ;;
    self-extend) echo "--self-extend $(($2 / 256)),128" ;;
    rerope) echo "--rerope 256" ;;
    leaky-rerope) [ "$s" -gt 1 ] && echo "--rerope 256,$s" || echo "--rerope 256" ;;
  esac
  return 0
}
