#include "kernels/embedding.hpp"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/gradcheck.hpp"

namespace stretch::test {
namespace {

constexpr int N = 7, C = 13, V = 11;
const std::vector<int> kIds = {3, 0, 3, 10, 7, 3, 0};  // repeats: 3 three times, 0 twice; most rows unused

TEST(Embedding, ForwardCopiesRows) {
  Rng rng(41);
  const auto table = random_normal(rng, V * C);
  std::vector<double> out(N * C, -1.0);
  embedding_forward<double>(out.data(), kIds.data(), table.data(), N, C);
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++) EXPECT_EQ(out[n * C + c], table[kIds[n] * C + c]);
  // add_forward adds on top of what is there
  const auto base = random_normal(rng, N * C);
  auto out2 = base;
  embedding_add_forward<double>(out2.data(), kIds.data(), table.data(), N, C);
  for (int i = 0; i < N * C; i++) EXPECT_EQ(out2[i], base[i] + out[i]);
}

void fd_embedding(bool add) {
  Rng rng(42);
  auto table = random_normal(rng, V * C);
  const auto base = random_normal(rng, N * C);
  const auto w = random_normal(rng, N * C);
  std::vector<double> out(N * C);
  auto loss = [&] {
    if (add) {
      out = base;
      embedding_add_forward<double>(out.data(), kIds.data(), table.data(), N, C);
    } else {
      embedding_forward<double>(out.data(), kIds.data(), table.data(), N, C);
    }
    return weighted_sum(w, out.data());
  };
  std::vector<double> dtable(V * C);
  embedding_backward<double>(dtable.data(), w.data(), kIds.data(), N, C, V);
  EXPECT_TRUE(gradcheck_ok(loss, {{"table", table.data(), dtable.data(), table.size()}}));
  // rows no id points at get exactly zero gradient; row 3 (three hits) gets three rows of w
  for (int c = 0; c < C; c++) {
    EXPECT_EQ(dtable[1 * C + c], 0.0);
    EXPECT_EQ(dtable[3 * C + c], w[0 * C + c] + w[2 * C + c] + w[5 * C + c]);
  }
}

TEST(Embedding, GradcheckRepeatedIds) { fd_embedding(false); }
TEST(Embedding, GradcheckAddForward) { fd_embedding(true); }

TEST(Embedding, FloatMatchesDoubleAndAccumulates) {
  const int n = 200, c = 37, rows = 9;
  Rng rng(43);
  const auto ids = random_ids(rng, n, rows);
  const auto dout = random_normal<float>(rng, n * c);
  const auto init = random_normal<float>(rng, rows * c);
  auto dt = init;
  embedding_backward<float>(dt.data(), dout.data(), ids.data(), n, c, rows);
  auto dtd = cast_vec<double>(init);
  embedding_backward<double>(dtd.data(), cast_vec<double>(dout).data(), ids.data(), n, c, rows);
  EXPECT_LT(rel_l2(dt, dtd), 1e-6);
  // a second call adds the same increment again
  auto dt2 = dt;
  embedding_backward<float>(dt2.data(), dout.data(), ids.data(), n, c, rows);
  std::vector<double> inc1(dt.size()), inc2(dt.size());
  for (std::size_t i = 0; i < dt.size(); i++) {
    inc1[i] = double(dt[i]) - init[i];
    inc2[i] = double(dt2[i]) - dt[i];
  }
  EXPECT_LT(rel_l2(inc2, inc1), 1e-5);
  std::vector<double> z(rows * c), z2(rows * c);
  const auto doutd = cast_vec<double>(dout);
  embedding_backward<double>(z.data(), doutd.data(), ids.data(), n, c, rows);
  embedding_backward<double>(z2.data(), doutd.data(), ids.data(), n, c, rows);
  embedding_backward<double>(z2.data(), doutd.data(), ids.data(), n, c, rows);
  for (std::size_t i = 0; i < z.size(); i++) EXPECT_NEAR(z2[i], 2 * z[i], 1e-12 * (1 + std::fabs(z[i])));
}

// Heavy collisions (few rows, many ids): bit-identical across runs and across thread counts.
TEST(Embedding, BackwardDeterministic) {
  const int n = 4096, c = 100, rows = 5;
  Rng rng(44);
  const auto ids = random_ids(rng, n, rows);
  const auto dout = random_normal<float>(rng, n * c);
  auto run = [&] {
    std::vector<float> dt(rows * c);
    embedding_backward<float>(dt.data(), dout.data(), ids.data(), n, c, rows);
    return dt;
  };
  const auto a = run(), b = run();
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto t1 = run();
  omp_set_num_threads(3);
  const auto t3 = run();
  omp_set_num_threads(saved);
  EXPECT_TRUE(bit_equal(a, b));
  EXPECT_TRUE(bit_equal(a, t1));
  EXPECT_TRUE(bit_equal(a, t3));
  // and equal to the plain sequential scatter in row order
  std::vector<float> seq(rows * c);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < c; j++) seq[ids[i] * c + j] += dout[i * c + j];
  EXPECT_TRUE(bit_equal(a, seq));
}

}  // namespace
}  // namespace stretch::test
