#include "position/logn.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/error.hpp"

namespace stretch {
namespace {

void check_l_train(int L_train) {
  if (L_train < 2)
    throw ConfigError("logn scaling: the training length must be >= 2 (log(L_train) is the normalizer), got " +
                      std::to_string(L_train));
}

// g(p) given 1 / log(L_train) (mode full or beyond).
double factor(int p, double inv_log_l, LognMode mode) {
  const double n = std::max(static_cast<double>(p) + 1.0, 1.0);
  const double g = std::log(mode == LognMode::full ? std::max(n, 2.0) : n) * inv_log_l;
  return mode == LognMode::beyond ? std::max(g, 1.0) : g;
}

template <class F>
void scale_rows(F* x, const int* pos, long BT, int row_stride, int C, int L_train, LognMode mode) {
  if (mode == LognMode::off) return;
  check_l_train(L_train);
  if (BT < 0 || C < 0 || row_stride < C)
    throw ConfigError("logn scaling: invalid shape BT=" + std::to_string(BT) + " C=" + std::to_string(C) +
                      " row_stride=" + std::to_string(row_stride) + " (expected BT, C >= 0 and row_stride >= C)");
  const double inv_log_l = 1.0 / std::log(static_cast<double>(L_train));
#pragma omp parallel for schedule(static)
  for (long r = 0; r < BT; r++) {
    const F gf = static_cast<F>(factor(pos[r], inv_log_l, mode));
    F* row = x + static_cast<std::int64_t>(r) * row_stride;
    for (int c = 0; c < C; c++) row[c] *= gf;
  }
}

}  // namespace

std::string to_string(LognMode m) {
  switch (m) {
    case LognMode::off: return "off";
    case LognMode::full: return "full";
    case LognMode::beyond: return "beyond";
  }
  return "?";
}

LognMode parse_logn_mode(const std::string& s, const std::string& flag) {
  if (s == "off") return LognMode::off;
  if (s == "full") return LognMode::full;
  if (s == "beyond") return LognMode::beyond;
  throw ConfigError(flag + ": unknown logn scaling mode '" + s + "' (expected one of: off, full, beyond)");
}

double logn_factor(int p, int L_train, LognMode mode) {
  if (mode == LognMode::off) return 1.0;
  check_l_train(L_train);
  return factor(p, 1.0 / std::log(static_cast<double>(L_train)), mode);
}

template <class F>
void logn_scale_queries(F* qkv, const int* pos, long BT, int row_stride, int C, int L_train, LognMode mode) {
  scale_rows(qkv, pos, BT, row_stride, C, L_train, mode);
}

template <class F>
void logn_scale_query_grads(F* dqkv, const int* pos, long BT, int row_stride, int C, int L_train, LognMode mode) {
  scale_rows(dqkv, pos, BT, row_stride, C, L_train, mode);
}

template void logn_scale_queries<float>(float*, const int*, long, int, int, int, LognMode);
template void logn_scale_queries<double>(double*, const int*, long, int, int, int, LognMode);
template void logn_scale_query_grads<float>(float*, const int*, long, int, int, int, LognMode);
template void logn_scale_query_grads<double>(double*, const int*, long, int, int, int, LognMode);

}  // namespace stretch
