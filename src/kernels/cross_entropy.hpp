// Fused softmax + cross-entropy over the vocabulary.
//
//   logits (N, V); targets (N) int32, a negative target means "not scored" (loss 0, gradient 0)
//   losses (N): -log softmax(logits[n])[targets[n]], computed with the max subtracted
//   backward: dlogits[n] = (softmax(logits[n]) - onehot(targets[n])) * dlosses[n] (overwrites; dlogits may
//   alias logits, so the classifier can work in place)
// Instantiated for float and double.
#pragma once

namespace stretch {

template <class F>
void cross_entropy_forward(F* losses, const F* logits, const int* targets, int N, int V);

template <class F>
void cross_entropy_backward(F* dlogits, const F* logits, const int* targets, const F* dlosses, int N, int V);

}  // namespace stretch
