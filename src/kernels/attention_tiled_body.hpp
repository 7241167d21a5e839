// The body of kernels/attention_tiled.hpp's kernels, included by it once per instruction-set target (no include
// guard): in namespace stretch::STRETCH_TILED_NS, every function carrying STRETCH_TILED_TARGET, with vectors of
// STRETCH_TILED_VEC_BYTES bytes. attention_tiled.hpp documents the algorithm and dispatches between the copies.
namespace stretch {
namespace STRETCH_TILED_NS {
namespace attention_tiled_detail {

inline constexpr int kBlockQ = 64;  // query rows per task
inline constexpr int kBlockK = 64;  // keys per streamed block
inline constexpr int kRows = 8;     // query rows per register tile

// A vector register of F (GCC/Clang vector extension): 64 bytes (zmm) where the code is compiled for AVX-512, else
// 32 (ymm; a 64-byte type there is split by the compiler into slow code). The results do not depend on the width:
// every sum runs lane by lane in the same order, and the padding lanes are zero.
inline constexpr int kVecBytes = STRETCH_TILED_VEC_BYTES;
template <class F>
struct Vec {
  typedef F type __attribute__((vector_size(kVecBytes)));
  static constexpr int kLanes = static_cast<int>(kVecBytes / sizeof(F));
};

// (vectors only by reference: passing or returning them by value changes the ABI without AVX-512, -Wpsabi)
template <class V, class F>
STRETCH_TILED_TARGET
inline void loadv(V& v, const F* p) {
  std::memcpy(&v, p, sizeof(V));
}
template <class V, class F>
STRETCH_TILED_TARGET
inline void storev(F* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}


// s (kRows, 2 * lanes), row stride lds = q (kRows, hd), row stride ldq, times kT (hd, .), row stride ldk;
// each dot product summed in the order d = 0 .. hd-1.
template <class F>
STRETCH_TILED_TARGET
inline void qk_tile(F* __restrict__ s, int lds, const F* __restrict__ q, int ldq, const F* __restrict__ kT, int ldk,
                    int hd) {
  using V = typename Vec<F>::type;
  constexpr int L = Vec<F>::kLanes;
  V acc0[kRows], acc1[kRows];
  for (int r = 0; r < kRows; r++) {
    acc0[r] = V{};
    acc1[r] = V{};
  }
  for (int d = 0; d < hd; d++) {
    V k0, k1;
    loadv(k0, kT + static_cast<std::ptrdiff_t>(d) * ldk);
    loadv(k1, kT + static_cast<std::ptrdiff_t>(d) * ldk + L);
    for (int r = 0; r < kRows; r++) {
      const F qv = q[r * ldq + d];
      acc0[r] += qv * k0;
      acc1[r] += qv * k1;
    }
  }
  for (int r = 0; r < kRows; r++) {
    storev(s + r * lds, acc0[r]);
    storev(s + r * lds + L, acc1[r]);
  }
}

// o (kRows, NV * lanes), row stride ldo += p (kRows, n), row stride ldp, times v (n, .), row stride ldv (j ascending).
template <class F, int NV>
STRETCH_TILED_TARGET
inline void pv_tile(F* __restrict__ o, int ldo, const F* __restrict__ p, int ldp, const F* __restrict__ v, int ldv,
                    int n) {
  using V = typename Vec<F>::type;
  constexpr int L = Vec<F>::kLanes;
  V acc[kRows][NV];
  for (int r = 0; r < kRows; r++)
    for (int c = 0; c < NV; c++) loadv(acc[r][c], o + r * ldo + c * L);
  for (int j = 0; j < n; j++) {
    V vj[NV];
    for (int c = 0; c < NV; c++) loadv(vj[c], v + static_cast<std::ptrdiff_t>(j) * ldv + c * L);
    for (int r = 0; r < kRows; r++) {
      const F pr = p[r * ldp + j];
      for (int c = 0; c < NV; c++) acc[r][c] += pr * vj[c];
    }
  }
  for (int r = 0; r < kRows; r++)
    for (int c = 0; c < NV; c++) storev(o + r * ldo + c * L, acc[r][c]);
}

// A 64-byte aligned scratch array.
template <class F>
struct AlignedFree {
  void operator()(F* p) const { ::operator delete(p, std::align_val_t(64)); }
};
template <class F>
STRETCH_TILED_TARGET
inline std::unique_ptr<F, AlignedFree<F>> aligned_zeros(std::size_t n) {
  F* p = static_cast<F*>(::operator new(n * sizeof(F), std::align_val_t(64)));
  std::fill_n(p, n, F(0));
  return std::unique_ptr<F, AlignedFree<F>>(p);
}


// dst (hd, BK) = the n rows src[j * ld .. + hd) transposed, columns n .. BK-1 zero.
template <class F>
STRETCH_TILED_TARGET
inline void load_transposed(F* __restrict__ dst, const F* src, std::int64_t ld, int n, int hd) {
  for (int j = 0; j < n; j++)
    for (int d = 0; d < hd; d++) dst[d * kBlockK + j] = src[j * ld + d];
  if (n < kBlockK)
    for (int d = 0; d < hd; d++) std::fill(dst + d * kBlockK + n, dst + (d + 1) * kBlockK, F(0));
}

// dst (BK, hdp) = the n rows src[j * ld .. + hd), rows n .. BK-1 zero (the padding columns hd .. hdp-1 of the
// rows stay as allocated: zero).
template <class F>
STRETCH_TILED_TARGET
inline void load_rows(F* __restrict__ dst, const F* src, std::int64_t ld, int n, int hd, int hdp) {
  for (int j = 0; j < n; j++) std::copy_n(src + j * ld, hd, dst + static_cast<std::ptrdiff_t>(j) * hdp);
  if (n < kBlockK)
    std::fill(dst + static_cast<std::ptrdiff_t>(n) * hdp, dst + static_cast<std::ptrdiff_t>(kBlockK) * hdp, F(0));
}

}  // namespace attention_tiled_detail


// out (B,T,C) = causal softmax(scale * q k^T + bias) v, never storing more than a tile of scores.
template <class F, class Bias>
STRETCH_TILED_TARGET
void attention_forward_tiled(F* out, const F* qkv, const int* pos, const Bias& bias, int B, int T, int C, int NH,
                             F scale, int window, F* lse, const FarScores<F>& far, int group) {
  namespace td = STRETCH_TILED_NS::attention_tiled_detail;
  ::stretch::attention_tiled_detail::check_args_tiled(B, T, C, NH, window, group);
  if (B == 0 || T == 0) return;
  const ::stretch::KeyRange keys{window > 0 && window < T ? window : T, group < T ? group : 0, NH};
  constexpr int BQ = td::kBlockQ;
  constexpr int BK = td::kBlockK;
  constexpr int R = td::kRows;
  constexpr int L = td::Vec<F>::kLanes;
  constexpr int NK = 2 * L;  // keys per register tile
  static_assert(BQ % R == 0 && BK % NK == 0, "attention_tiled: block sizes must be multiples of the register tile");
  const int hd = C / NH;
  const int hdp = (hd + L - 1) / L * L;  // hd padded to whole vectors
  const std::int64_t C3 = 3 * static_cast<std::int64_t>(C);
  const int nqb = (T + BQ - 1) / BQ;
  const std::int64_t nbh = static_cast<std::int64_t>(B) * NH;
  const std::int64_t ntasks = nbh * nqb;
  constexpr F kNegInf = -std::numeric_limits<F>::infinity();
  const bool dual = far.qk != nullptr;
  if (dual && far.window < 1)
    throw ConfigError("attention_tiled: the far score set needs a window >= 1, got " + std::to_string(far.window));
  const int wn = dual ? far.window : 0;
  const std::int64_t C2 = 2 * static_cast<std::int64_t>(C);

  // Every key block of every (b, h), packed once: keys transposed (hd, BK) and values as rows (BK, hdp), zero
  // padded. A key block is read by every query block at or after it (nqb / 2 of them on average), which would
  // otherwise each gather and transpose it again from the strided qkv. 2 T C values in all: linear in T.
  const int nkb = (T + BK - 1) / BK;
  const std::size_t kblock = static_cast<std::size_t>(hd) * BK, vblock = static_cast<std::size_t>(BK) * hdp;
  auto kpack = td::aligned_zeros<F>(static_cast<std::size_t>(nbh * nkb) * kblock);
  auto vpack = td::aligned_zeros<F>(static_cast<std::size_t>(nbh * nkb) * vblock);
#pragma omp parallel for schedule(static)
  for (std::int64_t t = 0; t < nbh * nkb; t++) {
    const std::int64_t bh = t / nkb;
    const int j0 = static_cast<int>(t % nkb) * BK;
    const F* kb = qkv + (bh / NH) * T * C3 + (bh % NH) * hd + C + j0 * C3;
    td::load_transposed(kpack.get() + static_cast<std::size_t>(t) * kblock, kb, C3, std::min(BK, T - j0), hd);
    td::load_rows(vpack.get() + static_cast<std::size_t>(t) * vblock, kb + C, C3, std::min(BK, T - j0), hd, hdp);
  }
  // the far keys, packed the same way
  auto fpack = td::aligned_zeros<F>(dual ? static_cast<std::size_t>(nbh * nkb) * kblock : 0);
  if (dual) {
#pragma omp parallel for schedule(static)
    for (std::int64_t t = 0; t < nbh * nkb; t++) {
      const std::int64_t bh = t / nkb;
      const int j0 = static_cast<int>(t % nkb) * BK;
      const F* kb = far.qk + (bh / NH) * T * C2 + (bh % NH) * hd + C + j0 * C2;
      td::load_transposed(fpack.get() + static_cast<std::size_t>(t) * kblock, kb, C2, std::min(BK, T - j0), hd);
    }
  }

#pragma omp parallel
  {
    auto qt_buf = td::aligned_zeros<F>(static_cast<std::size_t>(BQ) * hd);   // query rows (BQ, hd)
    auto s_buf = td::aligned_zeros<F>(static_cast<std::size_t>(BQ) * BK);    // scores, then probabilities
    auto o_buf = td::aligned_zeros<F>(static_cast<std::size_t>(BQ) * hdp);   // output accumulators
    auto m_buf = td::aligned_zeros<F>(BQ);
    auto l_buf = td::aligned_zeros<F>(BQ);
    auto fq_buf = td::aligned_zeros<F>(dual ? static_cast<std::size_t>(BQ) * hd : 0);  // far query rows
    auto ft_buf = td::aligned_zeros<F>(dual ? static_cast<std::size_t>(R) * NK : 0);   // one far score tile
    F* __restrict__ qt = qt_buf.get();
    F* __restrict__ sb = s_buf.get();
    F* __restrict__ ob = o_buf.get();
    F* __restrict__ mrow = m_buf.get();
    F* __restrict__ lrow = l_buf.get();

#pragma omp for schedule(dynamic, 1)
    for (std::int64_t task = 0; task < ntasks; task++) {
      // the query blocks with the most keys first
      const int qb = nqb - 1 - static_cast<int>(task / nbh);
      const std::int64_t bh = task % nbh;
      const int b = static_cast<int>(bh / NH);
      const int h = static_cast<int>(bh % NH);
      const F* qbase = qkv + static_cast<std::int64_t>(b) * T * C3 + static_cast<std::int64_t>(h) * hd;
      auto lo_of = [&keys, h](int i) { return keys.lo(h, i); };  // first key visible to query i
      const int* pb = pos + static_cast<std::int64_t>(b) * T;
      F* obase = out + static_cast<std::int64_t>(b) * T * C + static_cast<std::int64_t>(h) * hd;

      const int i0 = qb * BQ;
      const int nq = std::min(BQ, T - i0);
      const int nqp = (nq + R - 1) / R * R;
      for (int r = 0; r < nq; r++) std::copy_n(qbase + (i0 + r) * C3, hd, qt + r * hd);
      std::fill(qt + static_cast<std::ptrdiff_t>(nq) * hd, qt + static_cast<std::ptrdiff_t>(nqp) * hd, F(0));
      F* fq = fq_buf.get();
      if (dual) {
        const F* fbase = far.qk + static_cast<std::int64_t>(b) * T * C2 + static_cast<std::int64_t>(h) * hd;
        for (int r = 0; r < nq; r++) std::copy_n(fbase + (i0 + r) * C2, hd, fq + r * hd);
        std::fill(fq + static_cast<std::ptrdiff_t>(nq) * hd, fq + static_cast<std::ptrdiff_t>(nqp) * hd, F(0));
      }
      std::fill(ob, ob + static_cast<std::ptrdiff_t>(nqp) * hdp, F(0));
      for (int r = 0; r < nqp; r++) {
        mrow[r] = kNegInf;
        lrow[r] = F(0);
      }
      const int iend = i0 + nq;  // keys j < iend are visible to some row of the block

      for (int j0 = lo_of(i0) / BK * BK; j0 < iend; j0 += BK) {
        const int nk = std::min(BK, iend - j0);
        // this block's keys, transposed, and values (packed above)
        const std::size_t kbi = static_cast<std::size_t>(bh * nkb + j0 / BK);
        const F* __restrict__ kt = kpack.get() + kbi * kblock;
        const F* __restrict__ vbuf = vpack.get() + kbi * vblock;
        const F* __restrict__ ft = dual ? fpack.get() + kbi * kblock : nullptr;
        // S = Q K^T, skipping register tiles whose keys are all after all their rows or all before their windows;
        // with a far score set, the tiles beyond its window from Q' K'^T (both across its boundary)
        for (int r0 = 0; r0 < nqp; r0 += R) {
          const int ifirst = i0 + r0, ilast = i0 + r0 + R - 1;
          const int jfirst = lo_of(i0 + r0);
          for (int c0 = 0; c0 < nk; c0 += NK) {
            const int jt = j0 + c0;
            if (jt > ilast) break;
            if (jt + NK <= jfirst) continue;
            F* st = sb + r0 * BK + c0;
            if (!dual || ilast - jt < wn) {  // every pair of the tile is near (i - j <= ilast - jt)
              td::qk_tile(st, BK, qt + r0 * hd, hd, kt + c0, BK, hd);
            } else if (ifirst - (jt + NK - 1) >= wn) {  // every pair is far
              td::qk_tile(st, BK, fq + r0 * hd, hd, ft + c0, BK, hd);
            } else {
              F* fs = ft_buf.get();
              td::qk_tile(st, BK, qt + r0 * hd, hd, kt + c0, BK, hd);
              td::qk_tile(fs, NK, fq + r0 * hd, hd, ft + c0, BK, hd);
              for (int r = 0; r < R; r++)
                for (int c = 0; c < NK; c++)
                  if (ifirst + r - (jt + c) >= wn) st[r * BK + c] = fs[r * NK + c];
            }
          }
        }
        // online softmax per row
        for (int r = 0; r < nqp; r++) {
          F* srow = sb + r * BK;
          const int i = i0 + r;
          // visible keys of this block: js .. jv-1
          const int jv = r < nq ? std::min(nk, i - j0 + 1) : 0;
          const int js = std::max(0, lo_of(i) - j0);
          if (jv <= js) {
            std::fill(srow, srow + BK, F(0));
            continue;
          }
          const int pi = pb[i];
          const int* pj = pb + j0;
          for (int j = js; j < jv; j++) srow[j] = scale * srow[j] + attention_bias_value<F>(bias, h, pi, pj[j]);
          F mx = mrow[r];
#pragma omp simd reduction(max : mx)
          for (int j = js; j < jv; j++) mx = std::max(mx, srow[j]);
          F sum = F(0);
#pragma omp simd reduction(+ : sum)
          for (int j = js; j < jv; j++) {
            const F p = kexp(srow[j] - mx);
            srow[j] = p;
            sum += p;
          }
          std::fill(srow, srow + js, F(0));
          std::fill(srow + jv, srow + BK, F(0));
          const F mold = mrow[r];
          if (mx != mold) {
            // the first block of a row has mold = -inf: its l and o are 0, alpha is not needed
            const F alpha = mold == kNegInf ? F(0) : kexp(mold - mx);
            lrow[r] *= alpha;
            F* orow = ob + r * hdp;
#pragma omp simd
            for (int d = 0; d < hdp; d++) orow[d] *= alpha;
            mrow[r] = mx;
          }
          lrow[r] += sum;
        }
        // O += P V (j ascending), over the keys s0 .. n-1 visible to some row of each register tile
        for (int r0 = 0; r0 < nqp; r0 += R) {
          const int n = std::min(nk, i0 + r0 + R - j0);
          const int s0 = std::max(0, lo_of(i0 + r0) - j0);
          if (n <= s0) continue;
          const F* pt = sb + r0 * BK + s0;
          const F* vt = vbuf + static_cast<std::ptrdiff_t>(s0) * hdp;
          int c = 0;
          for (; c + 2 * L <= hdp; c += 2 * L) td::pv_tile<F, 2>(ob + r0 * hdp + c, hdp, pt, BK, vt + c, hdp, n - s0);
          if (c < hdp) td::pv_tile<F, 1>(ob + r0 * hdp + c, hdp, pt, BK, vt + c, hdp, n - s0);
        }
      }
      for (int r = 0; r < nq; r++) {
        const F inv = F(1) / lrow[r];
        const F* orow = ob + r * hdp;
        F* dst = obase + (i0 + r) * static_cast<std::int64_t>(C);
        for (int d = 0; d < hd; d++) dst[d] = orow[d] * inv;
      }
      if (lse) {
        F* lrow_out = lse + bh * T + i0;
        for (int r = 0; r < nq; r++) lrow_out[r] = mrow[r] + std::log(lrow[r]);
      }
    }
  }
}

// dqkv (B, T, 3C) += the gradient of attention_forward_tiled's out given dout (B, T, C), from the forward's inputs,
// its output `out` and its `lse` (B, NH, T). Learned biases get their gradient through bias.accumulate (called by
// the task owning (b, h)).
template <class F, class Bias>
STRETCH_TILED_TARGET
void attention_backward_tiled(F* dqkv, const F* dout, const F* qkv, const F* out, const F* lse, const int* pos,
                              Bias& bias, int B, int T, int C, int NH, F scale, int window, int group) {
  namespace td = STRETCH_TILED_NS::attention_tiled_detail;
  ::stretch::attention_tiled_detail::check_args_tiled(B, T, C, NH, window, group);
  if (B == 0 || T == 0) return;
  const ::stretch::KeyRange keys{window > 0 && window < T ? window : T, group < T ? group : 0, NH};
  constexpr int BQ = td::kBlockQ;
  constexpr int BK = td::kBlockK;
  constexpr int R = td::kRows;
  constexpr int L = td::Vec<F>::kLanes;
  constexpr int NK = 2 * L;
  static_assert(BQ % NK == 0 && BK % NK == 0 && BQ % R == 0 && BK % R == 0,
                "attention_tiled: block sizes must be multiples of the register tiles");
  const int hd = C / NH;
  const int hdp = (hd + L - 1) / L * L;
  const std::int64_t C3 = 3 * static_cast<std::int64_t>(C);
  const int nqb = (T + BQ - 1) / BQ;
  const std::int64_t nbh = static_cast<std::int64_t>(B) * NH;
  const std::size_t Tp = static_cast<std::size_t>(nqb) * BQ + BK;  // rows of the dk / dv accumulators

  // dq += sum over the row tile's keys of a(r, j) x_j, as the forward's P V (rows r0 .. r0+R-1, keys s0 .. n-1)
  auto rows_times = [&](F* o, const F* a, int lda, const F* x, int s0, int n) STRETCH_TILED_TARGET {
    int c = 0;
    for (; c + 2 * L <= hdp; c += 2 * L) td::pv_tile<F, 2>(o + c, hdp, a + s0, lda, x + static_cast<std::ptrdiff_t>(s0) * hdp + c, hdp, n - s0);
    if (c < hdp) td::pv_tile<F, 1>(o + c, hdp, a + s0, lda, x + static_cast<std::ptrdiff_t>(s0) * hdp + c, hdp, n - s0);
  };

#pragma omp parallel
  {
    auto q_buf = td::aligned_zeros<F>(static_cast<std::size_t>(BQ) * hdp);    // Q_i rows (BQ, hdp)
    auto do_buf = td::aligned_zeros<F>(static_cast<std::size_t>(BQ) * hdp);   // dO_i rows (BQ, hdp)
    auto dq_buf = td::aligned_zeros<F>(static_cast<std::size_t>(BQ) * hdp);   // dQ_i accumulator
    // every key block j of the task's (b, h), packed once per task (each is read by every query block at or
    // after it): K_j transposed (hd, BK), V_j transposed (hd, BK), K_j rows (BK, hdp); 3 T hd values per thread
    const int nkb = (T + BK - 1) / BK;
    const std::size_t tblock = static_cast<std::size_t>(hd) * BK, rblock = static_cast<std::size_t>(BK) * hdp;
    auto ktp_buf = td::aligned_zeros<F>(static_cast<std::size_t>(nkb) * tblock);
    auto vtp_buf = td::aligned_zeros<F>(static_cast<std::size_t>(nkb) * tblock);
    auto krp_buf = td::aligned_zeros<F>(static_cast<std::size_t>(nkb) * rblock);
    auto p_buf = td::aligned_zeros<F>(static_cast<std::size_t>(BQ) * BK);     // P (BQ, BK)
    auto ds_buf = td::aligned_zeros<F>(static_cast<std::size_t>(BQ) * BK);    // dP, then scale * dS
    auto pt_buf = td::aligned_zeros<F>(static_cast<std::size_t>(BK) * BQ);    // P^T (BK, BQ)
    auto dst_buf = td::aligned_zeros<F>(static_cast<std::size_t>(BK) * BQ);   // scale * dS^T (BK, BQ)
    auto dk_buf = td::aligned_zeros<F>(Tp * static_cast<std::size_t>(hdp));   // dK (T, hdp) of this (b, h)
    auto dv_buf = td::aligned_zeros<F>(Tp * static_cast<std::size_t>(hdp));   // dV (T, hdp)
    auto d_buf = td::aligned_zeros<F>(BQ);                                    // D_i
    F* __restrict__ qr = q_buf.get();
    F* __restrict__ dor = do_buf.get();
    F* __restrict__ dqb = dq_buf.get();
    F* __restrict__ ktp = ktp_buf.get();
    F* __restrict__ vtp = vtp_buf.get();
    F* __restrict__ krp = krp_buf.get();
    F* __restrict__ pb_ = p_buf.get();
    F* __restrict__ dsb = ds_buf.get();
    F* __restrict__ pt = pt_buf.get();
    F* __restrict__ dst = dst_buf.get();
    F* __restrict__ dk = dk_buf.get();
    F* __restrict__ dv = dv_buf.get();
    F* __restrict__ Drow = d_buf.get();

#pragma omp for schedule(dynamic, 1)
    for (std::int64_t bh = 0; bh < nbh; bh++) {
      const int b = static_cast<int>(bh / NH);
      const int h = static_cast<int>(bh % NH);
      const std::int64_t base = static_cast<std::int64_t>(b) * T * C3 + static_cast<std::int64_t>(h) * hd;
      auto lo_of = [&keys, h](int i) { return keys.lo(h, i); };
      const F* qbase = qkv + base;
      const F* kbase = qbase + C;
      const F* vbase = qbase + 2 * static_cast<std::int64_t>(C);
      const std::int64_t obase = static_cast<std::int64_t>(b) * T * C + static_cast<std::int64_t>(h) * hd;
      const int* pbp = pos + static_cast<std::int64_t>(b) * T;
      const F* lbh = lse + bh * T;
      std::fill(dk, dk + Tp * hdp, F(0));
      std::fill(dv, dv + Tp * hdp, F(0));
      for (int kb = 0; kb < nkb; kb++) {
        const int j0 = kb * BK, nk = std::min(BK, T - j0);
        td::load_transposed(ktp + kb * tblock, kbase + j0 * C3, C3, nk, hd);
        td::load_transposed(vtp + kb * tblock, vbase + j0 * C3, C3, nk, hd);
        td::load_rows(krp + kb * rblock, kbase + j0 * C3, C3, nk, hd, hdp);
      }

      for (int qb = 0; qb < nqb; qb++) {
        const int i0 = qb * BQ;
        const int nq = std::min(BQ, T - i0);
        const int nqp = (nq + R - 1) / R * R;
        std::fill(qr, qr + static_cast<std::size_t>(BQ) * hdp, F(0));
        std::fill(dor, dor + static_cast<std::size_t>(BQ) * hdp, F(0));
        std::fill(dqb, dqb + static_cast<std::size_t>(BQ) * hdp, F(0));
        for (int r = 0; r < nq; r++) {
          const std::int64_t i = i0 + r;
          std::copy_n(qbase + i * C3, hd, qr + r * hdp);
          std::copy_n(dout + obase + i * C, hd, dor + r * hdp);
          const F* orow = out + obase + i * C;
          F dsum = F(0);
          for (int d = 0; d < hd; d++) dsum += dor[r * hdp + d] * orow[d];
          Drow[r] = dsum;
        }
        const int iend = i0 + nq;

        for (int j0 = lo_of(i0) / BK * BK; j0 < iend; j0 += BK) {
          const int nk = std::min(BK, iend - j0);
          const int nkp = (nk + R - 1) / R * R;
          const F* __restrict__ kt = ktp + (j0 / BK) * tblock;  // packed at the start of the task
          const F* __restrict__ vt = vtp + (j0 / BK) * tblock;
          const F* __restrict__ kr = krp + (j0 / BK) * rblock;
          // S = Q K^T and dP = dO V^T on the register tiles that hold visible scores
          for (int r0 = 0; r0 < nqp; r0 += R) {
            const int ilast = i0 + r0 + R - 1;
            const int jfirst = lo_of(i0 + r0);
            for (int c0 = 0; c0 < nk; c0 += NK) {
              if (j0 + c0 > ilast) break;
              if (j0 + c0 + NK <= jfirst) continue;
              td::qk_tile(pb_ + r0 * BK + c0, BK, qr + r0 * hdp, hdp, kt + c0, BK, hd);
              td::qk_tile(dsb + r0 * BK + c0, BK, dor + r0 * hdp, hdp, vt + c0, BK, hd);
            }
          }
          // P and scale * dS per row (0 outside the visible keys), the bias gradient
          for (int r = 0; r < nqp; r++) {
            F* prow = pb_ + r * BK;
            F* dsrow = dsb + r * BK;
            const int i = i0 + r;
            const int jv = r < nq ? std::min(nk, i - j0 + 1) : 0;
            const int js = std::max(0, lo_of(i) - j0);
            if (jv <= js) {
              std::fill(prow, prow + BK, F(0));
              std::fill(dsrow, dsrow + BK, F(0));
              continue;
            }
            const int pi = pbp[i];
            const int* pj = pbp + j0;
            const F li = lbh[i];
            const F Di = Drow[r];
            for (int j = js; j < jv; j++) {
              const F p = kexp(scale * prow[j] + attention_bias_value<F>(bias, h, pi, pj[j]) - li);
              const F ds = p * (dsrow[j] - Di);
              if constexpr (Bias::kLearned) bias.accumulate(b, h, pi, pj[j], ds);
              prow[j] = p;
              dsrow[j] = scale * ds;
            }
            std::fill(prow, prow + js, F(0));
            std::fill(prow + jv, prow + BK, F(0));
            std::fill(dsrow, dsrow + js, F(0));
            std::fill(dsrow + jv, dsrow + BK, F(0));
          }
          // dQ_i += scale dS K_j (keys ascending), over the keys visible to some row of each tile
          for (int r0 = 0; r0 < nqp; r0 += R) {
            const int n = std::min(nk, i0 + r0 + R - j0);
            const int s0 = std::max(0, lo_of(i0 + r0) - j0);
            if (n > s0) rows_times(dqb + r0 * hdp, dsb + r0 * BK, BK, kr, s0, n);
          }
          // transposes, then dV_j += P^T dO_i and dK_j += scale dS^T Q_i (queries ascending)
          for (int r = 0; r < nqp; r++)
            for (int j = 0; j < nkp; j++) {
              pt[j * BQ + r] = pb_[r * BK + j];
              dst[j * BQ + r] = dsb[r * BK + j];
            }
          for (int c0 = 0; c0 < nkp; c0 += R) {
            // key rows j0+c0 .. j0+c0+R-1 see queries from j0+c0 on, up to hi(j0+c0+R-1) (window, group)
            const int s0 = std::max(0, j0 + c0 - i0);
            const int n = std::min(nqp, keys.hi(h, j0 + c0 + R - 1) + 1 - i0);
            if (n <= s0) continue;
            F* dvrow = dv + static_cast<std::ptrdiff_t>(j0 + c0) * hdp;
            F* dkrow = dk + static_cast<std::ptrdiff_t>(j0 + c0) * hdp;
            rows_times(dvrow, pt + c0 * BQ, BQ, dor, s0, n);
            rows_times(dkrow, dst + c0 * BQ, BQ, qr, s0, n);
          }
        }
        F* dqbase = dqkv + base;
        for (int r = 0; r < nq; r++) {
          F* dst_row = dqbase + (i0 + r) * C3;
          const F* src = dqb + r * hdp;
          for (int d = 0; d < hd; d++) dst_row[d] += src[d];
        }
      }
      F* dkbase = dqkv + base + C;
      F* dvbase = dkbase + C;
      for (int j = 0; j < T; j++) {
        for (int d = 0; d < hd; d++) {
          dkbase[j * C3 + d] += dk[static_cast<std::ptrdiff_t>(j) * hdp + d];
          dvbase[j * C3 + d] += dv[static_cast<std::ptrdiff_t>(j) * hdp + d];
        }
      }
    }
  }
}

}  // namespace STRETCH_TILED_NS
}  // namespace stretch
