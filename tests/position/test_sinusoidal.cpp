// Fixed sinusoidal position embeddings (position/sinusoidal.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.hpp"
#include "position/sinusoidal.hpp"

namespace stretch {
namespace {

// PE(p, c), written independently of the kernel: frequency exp(-(2i/C) ln 10000).
double pe(int p, int c, int C) {
  const int i = c / 2;
  const double a = p * std::exp(-(2.0 * i / C) * std::log(10000.0));
  return c % 2 == 0 ? std::sin(a) : std::cos(a);
}

TEST(Sinusoidal, ExactValuesAndAccumulation) {
  const int C = 16;
  const std::vector<int> pos = {0, 1, 3, 100, 4095};
  std::vector<double> out(pos.size() * C, 1.0);  // += onto existing values
  sinusoidal_add_forward(out.data(), pos.data(), static_cast<int>(pos.size()), C);
  for (std::size_t n = 0; n < pos.size(); n++)
    for (int c = 0; c < C; c++) EXPECT_NEAR(out[n * C + c], 1.0 + pe(pos[n], c, C), 1e-12) << pos[n] << " " << c;
  // hand-picked: p = 3, channel 0 = sin 3, channel 1 = cos 3, channel 2 = sin(3 / 10000^(2/16)) = sin(3 / 10^0.5)
  EXPECT_NEAR(out[2 * C + 0], 1.0 + std::sin(3.0), 1e-15);
  EXPECT_NEAR(out[2 * C + 1], 1.0 + std::cos(3.0), 1e-15);
  EXPECT_NEAR(out[2 * C + 2], 1.0 + std::sin(3.0 / std::sqrt(10.0)), 1e-15);
  // position 0: sin 0 = 0, cos 0 = 1
  for (int c = 0; c < C; c++) EXPECT_EQ(out[c], c % 2 == 0 ? 1.0 : 2.0);
}

TEST(Sinusoidal, OddWidthLastChannelIsASine) {
  const int C = 7;
  const std::vector<int> pos = {0, 5, 1234};
  std::vector<double> out(pos.size() * C, 0.0);
  sinusoidal_add_forward(out.data(), pos.data(), static_cast<int>(pos.size()), C);
  for (std::size_t n = 0; n < pos.size(); n++) {
    for (int c = 0; c < C; c++) EXPECT_NEAR(out[n * C + c], pe(pos[n], c, C), 1e-12);
    EXPECT_NEAR(out[n * C + 6], std::sin(pos[n] / std::pow(10000.0, 6.0 / 7.0)), 1e-12);
  }
}

TEST(Sinusoidal, FloatMatchesDoubleAtLargePositions) {
  const int C = 64;
  std::vector<int> pos;
  for (int p = 0; p < 20000; p += 997) pos.push_back(p);
  std::vector<double> d(pos.size() * C, 0.0);
  std::vector<float> f(pos.size() * C, 0.0f);
  sinusoidal_add_forward(d.data(), pos.data(), static_cast<int>(pos.size()), C);
  sinusoidal_add_forward(f.data(), pos.data(), static_cast<int>(pos.size()), C);
  for (std::size_t i = 0; i < d.size(); i++) EXPECT_NEAR(f[i], d[i], 1e-7) << i;
}

TEST(Sinusoidal, DotProductDependsOnlyOnOffset) {
  const int C = 64;
  auto row = [&](int p) {
    std::vector<double> r(C, 0.0);
    sinusoidal_add_forward(r.data(), &p, 1, C);
    return r;
  };
  auto dot = [&](const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0.0;
    for (int c = 0; c < C; c++) s += a[c] * b[c];
    return s;
  };
  for (int k : {0, 1, 5, 17, 300}) {
    const double ref = dot(row(0), row(k));
    double expect = 0.0;  // sum over pairs of cos(k w_i)
    for (int i = 0; i < C / 2; i++) expect += std::cos(k * std::pow(10000.0, -2.0 * i / C));
    EXPECT_NEAR(ref, expect, 1e-12);
    for (int p : {3, 100, 1000, 9999}) EXPECT_NEAR(dot(row(p), row(p + k)), ref, 1e-9) << p << " " << k;
  }
}

TEST(Sinusoidal, InvalidShapeThrows) {
  std::vector<float> out(4);
  int p = 0;
  EXPECT_THROW(sinusoidal_add_forward(out.data(), &p, 1, 0), ConfigError);
  EXPECT_THROW(sinusoidal_add_forward(out.data(), &p, -1, 4), ConfigError);
}

}  // namespace
}  // namespace stretch
