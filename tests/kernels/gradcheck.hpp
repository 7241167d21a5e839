// Finite-difference gradient checking for kernels, in double precision (header only).
//
// Recipe (see tests/kernels/test_layernorm.cpp for a complete example):
//   1. Fill the inputs with random doubles (fill_normal) and draw fixed random output weights w (same size as the
//      kernel's output).
//   2. Define the scalar loss L = sum_k w_k out_k by running the double forward kernel on the current inputs
//      (weighted_sum). The lambda must recompute everything from the input arrays on every call and must not write
//      into the analytic gradient arrays.
//   3. Compute the analytic gradients once: zero the gradient arrays and run the double backward kernel with
//      dout = w (backward kernels accumulate, so zeroing first matters).
//   4. EXPECT_TRUE(gradcheck_ok(loss, {{"inp", inp.data(), dinp.data(), inp.size()}, ...}));
//
// gradcheck() perturbs every element x_i of every listed input (or every stride-th one, see max_per_input) by
// +-eps, in place, restores it bit-exactly, and compares the central difference (L(x+eps) - L(x-eps)) / (2 eps)
// with the analytic gradient g_i using
//     err_i = |g_i - fd_i| / max(floor, |g_i| + |fd_i|).
// Resolution: with eps = 1e-6 the rounding noise of the difference is about 1e-16 |L| / eps ~ 1e-10 |L| (more when
// L sums many terms), so with the default tolerance 1e-5 only gradient entries above roughly 1e-4 |L| are resolved.
// Keep |L| of order 1..10, avoid saturated regimes for weighted-sum losses (check tiny gradients with a loss of
// their own, as test_gelu.cpp does for the tails), or raise `floor`. A wrong formula (a missing term, a wrong
// factor) gives errors of order 1e-3 .. 1.
//
// Set STRETCH_GRADCHECK_VERBOSE=1 to print the max relative error of every passing gradcheck_ok.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "core/rng.hpp"

namespace stretch::test {

// One differentiable input: its values (perturbed during the check and restored) and the analytic dL/dx.
struct GradArg {
  std::string name;
  double* x;
  const double* grad;
  std::size_t n;
};

struct GradCheckOptions {
  double eps = 1e-6;                  // central-difference step
  double floor = 1e-6;                // denominator floor of the relative error
  double tol = 1e-5;                  // gradcheck_ok fails when the max relative error reaches this
  std::size_t max_per_input = 4096;   // larger inputs are checked at a regular stride
};

struct GradCheckReport {
  double max_rel_err = 0.0;  // max over all checked elements
  std::string worst;         // "name[i]: analytic a, numeric b" of the worst element
  std::size_t checked = 0;   // number of elements perturbed
};

inline GradCheckReport gradcheck(const std::function<double()>& loss, const std::vector<GradArg>& args,
                                 const GradCheckOptions& opt = {}) {
  GradCheckReport rep;
  for (const GradArg& a : args) {
    const std::size_t stride = a.n > opt.max_per_input ? (a.n + opt.max_per_input - 1) / opt.max_per_input : 1;
    for (std::size_t i = 0; i < a.n; i += stride) {
      const double orig = a.x[i];
      a.x[i] = orig + opt.eps;
      const double lp = loss();
      a.x[i] = orig - opt.eps;
      const double lm = loss();
      a.x[i] = orig;
      const double fd = (lp - lm) / (2.0 * opt.eps);
      const double g = a.grad[i];
      const double err = std::fabs(g - fd) / std::max(opt.floor, std::fabs(g) + std::fabs(fd));
      rep.checked++;
      if (!(err <= rep.max_rel_err)) {  // also catches NaN
        rep.max_rel_err = std::isnan(err) ? INFINITY : err;
        std::ostringstream os;
        os.precision(12);
        os << a.name << "[" << i << "]: analytic " << g << ", numeric " << fd;
        rep.worst = os.str();
      }
    }
  }
  return rep;
}

// GoogleTest-friendly wrapper: EXPECT_TRUE(gradcheck_ok(loss, args)); the message names the worst element.
inline ::testing::AssertionResult gradcheck_ok(const std::function<double()>& loss, const std::vector<GradArg>& args,
                                               const GradCheckOptions& opt = {}) {
  const GradCheckReport rep = gradcheck(loss, args, opt);
  if (rep.checked == 0) return ::testing::AssertionFailure() << "gradcheck: no elements checked";
  if (rep.max_rel_err < opt.tol) {
    if (std::getenv("STRETCH_GRADCHECK_VERBOSE")) {
      std::printf("gradcheck: max rel err %.3g over %zu elements (worst %s)\n", rep.max_rel_err, rep.checked,
                  rep.worst.c_str());
    }
    return ::testing::AssertionSuccess() << "max rel err " << rep.max_rel_err << " over " << rep.checked;
  }
  return ::testing::AssertionFailure() << "gradcheck: max rel err " << rep.max_rel_err << " >= tol " << opt.tol
                                       << " at " << rep.worst << " (" << rep.checked << " elements checked)";
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers shared by the kernel tests.

// n standard-normal values times scale (+ shift), drawn from rng; T is float or double.
template <class T = double>
std::vector<T> random_normal(Rng& rng, std::size_t n, double scale = 1.0, double shift = 0.0) {
  std::vector<T> v(n);
  for (auto& x : v) x = static_cast<T>(shift + scale * static_cast<double>(rng.normal()));
  return v;
}

// n integers uniform in [0, hi).
inline std::vector<int> random_ids(Rng& rng, std::size_t n, int hi) {
  std::vector<int> v(n);
  for (auto& x : v) x = static_cast<int>(rng.below(static_cast<std::uint64_t>(hi)));
  return v;
}

// sum_k w_k out_k
inline double weighted_sum(const std::vector<double>& w, const double* out) {
  double s = 0.0;
  for (std::size_t k = 0; k < w.size(); k++) s += w[k] * out[k];
  return s;
}

template <class To, class From>
std::vector<To> cast_vec(const std::vector<From>& v) {
  return std::vector<To>(v.begin(), v.end());
}

// ||a - b||_2 / max(||b||_2, tiny): the "relative to the output norm" error used by consistency tests.
template <class A, class B>
double rel_l2(const std::vector<A>& a, const std::vector<B>& b) {
  double num = 0.0, den = 0.0;
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; i++) {
    const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
    num += d * d;
    den += static_cast<double>(b[i]) * static_cast<double>(b[i]);
  }
  if (a.size() != b.size()) return INFINITY;
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

// Bit-identical comparison (also distinguishes -0 from +0 and compares NaN payloads).
template <class T>
bool bit_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

}  // namespace stretch::test
