// The blocked driver of the packed GEMM and convolution, written once for every level. It is
// included inside a level's namespace, after kernels/packed_gemm_common.h, <omp.h> and
// <algorithm>: by packed_gemm_avx512.cpp (between SDPAL_AVX512_BEGIN/END) and, once per Highway
// target, by packed_gemm.cpp (Highway's per-target include guard below). A level supplies the
// traits `Kern`:
//   kMR, kNR, kAS      micro-tile rows, columns (weight panel width), floats per packed A k-step
//   kKC, kMC, kNCMax   K-block, activation block rows, weight block columns
//   pack_a_rows(rows[kMR], len, dest, dst)   dst[dest(j) * kAS + i] = rows[i][j] (null: zeros)
//   pack_b_panel(rows, ld, nvalid, len, dest, panel)
//                      panel[dest(j) * kNR + r] = rows[r * ld + j] (r >= nvalid: zeros)
//   pack_plane_block(px[16], nch, npx, dst, plane)
//                      dst[j * plane + i] = px[i][j] (null: zeros), j < nch, i < npx (<= 16)
//   micro_kernel(at, b, c[kMR], ncols, bias, add_c)
//                      c[i][j] = (add_c ? c[i][j] : 0) + (bias ? bias[j] : 0) + sum_k A[k,i] b[k,j]
//                      for rows with c[i] non-null and j < ncols, over a kc x kNR panel b
// Every weight source goes through the same packing and micro-kernel of a level, so a fused
// compressed GEMM equals expand-then-GEMM bit for bit on each level.
#if defined(SDPAL_KERNELS_PACKED_GEMM_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SDPAL_KERNELS_PACKED_GEMM_INL_H_
#undef SDPAL_KERNELS_PACKED_GEMM_INL_H_
#else
#define SDPAL_KERNELS_PACKED_GEMM_INL_H_
#endif

// The GotoBLAS/BLIS scheme: the weight (B = W^T) is packed one K-block x N-block at a time into
// kNR-wide panels, shared by all threads; each thread packs its MC x KC block of activations into
// kMR-wide panels and runs the micro-kernel over them. K is taken in nkb blocks; kc_of(p) is block
// p's packed length (<= kc_max), pack_a(p, i0, mc, dst) packs rows [i0, i0 + mc) of block p into
// ceil(mc / kMR) panels of kc x kAS, pack_b(p, n0, nvalid, dst, reader) packs one kc x kNR weight
// panel, and prefetch_a(p, i0, mc, part, parts) fetches part `part` of `parts` of what
// pack_a(p, i0, mc) will read into L2: spread over the micro-kernel calls of the block before, so
// the activation rows, read once per block from memory, do not stall the packing.
template <class Kern, class KcOf, class PackA, class PrefetchA, class PackB>
void run_blocked(int64_t M, int64_t N, int64_t nkb, int64_t kc_max, int64_t src_len_max, KcOf kc_of,
                 PackA pack_a, PrefetchA prefetch_a, PackB pack_b, const WeightSource& w,
                 const float* bias, float* y, bool parallel) {
  using packed::ceil_div;
  constexpr int kMR = Kern::kMR, kNR = Kern::kNR, kAS = Kern::kAS;
  constexpr int64_t kMC = Kern::kMC;
  const int64_t n_blocks = ceil_div(N, Kern::kNCMax);
  const int64_t nc = ceil_div(ceil_div(N, n_blocks), kNR) * kNR;
  float* bbuf = packed::scratch(packed::Scratch::B, nc * kc_max);
  const int64_t tiles = ceil_div(M, kMR);
#pragma omp parallel num_threads(parallel ? omp_get_max_threads() : 1)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    float* abuf = packed::scratch(packed::Scratch::A, ceil_div(kMC, kMR) * kAS * kc_max);
    packed::WeightReader reader(w, kNR, src_len_max);
    for (int64_t jc = 0; jc < N; jc += nc) {
      const int64_t ncur = std::min(nc, N - jc), panels = ceil_div(ncur, kNR);
      for (int64_t p = 0; p < nkb; ++p) {
        const int64_t kc = kc_of(p);
#pragma omp for schedule(dynamic, 1)
        for (int64_t jp = 0; jp < panels; ++jp) {
          const int nvalid = static_cast<int>(std::min<int64_t>(kNR, ncur - jp * kNR));
          pack_b(p, jc + jp * kNR, nvalid, bbuf + jp * kNR * kc, reader);
        }
        // Rows [i0, i0 + mc) times panels [jp0, jp1) of this weight block, prefetching the
        // rows [ni0, ni0 + nmc) of K-block np that this thread packs next (nmc 0: none).
        auto compute = [&](int64_t i0, int64_t mc, int64_t jp0, int64_t jp1, int64_t np,
                           int64_t ni0, int64_t nmc) {
          pack_a(p, i0, mc, abuf);
          const int64_t calls = (jp1 - jp0) * ceil_div(mc, kMR);
          int64_t call = 0;
          for (int64_t jp = jp0; jp < jp1; ++jp) {
            const int64_t j0 = jc + jp * kNR;
            const int ncols = static_cast<int>(std::min<int64_t>(kNR, N - j0));
            for (int64_t ip = 0; ip * kMR < mc; ++ip) {
              if (nmc > 0) prefetch_a(np, ni0, nmc, call++, calls);
              float* rows[kMR];
              for (int i = 0; i < kMR; ++i)
                rows[i] = ip * kMR + i < mc ? y + (i0 + ip * kMR + i) * N + j0 : nullptr;
              const int64_t zero = 0;
              const packed::ATile at{abuf + ip * kAS * kc, kc, kAS, 1, &zero};
              Kern::micro_kernel(at, bbuf + jp * kNR * kc, rows, ncols,
                                 p == 0 && bias ? bias + j0 : nullptr, p > 0);
            }
          }
        };
        if (tiles >= 4 * nt) {
          // Enough rows: each thread takes an equal share of row tiles, in blocks of kMC rows.
          const int64_t ia = tiles * t / nt * kMR, i1 = std::min(M, tiles * (t + 1) / nt * kMR);
          for (int64_t i0 = ia; i0 < i1; i0 += kMC) {
            const int64_t next = i0 + kMC;
            if (next < i1)
              compute(i0, std::min(kMC, i1 - i0), 0, panels, p, next, std::min(kMC, i1 - next));
            else
              compute(i0, std::min(kMC, i1 - i0), 0, panels, p + 1, ia,
                      p + 1 < nkb ? std::min(kMC, i1 - ia) : 0);
          }
#pragma omp barrier
        } else {
          // Few rows: split the weight panels too, so that every thread has work.
          const int64_t m_blocks = ceil_div(M, kMC);
          const int64_t parts = std::clamp<int64_t>(ceil_div(2 * nt, m_blocks), 1, panels);
#pragma omp for schedule(dynamic, 1)
          for (int64_t task = 0; task < m_blocks * parts; ++task) {
            const int64_t mb = task / parts, part = task % parts;
            compute(mb * kMC, std::min(kMC, M - mb * kMC), panels * part / parts,
                    panels * (part + 1) / parts, 0, 0, 0);
          }
        }
      }
    }
  }
}

// Stride-1 convolutions without im2col: each K-block's input channels are laid out as zero-padded
// planes [b][ci][iy * Wp + ix], once per block and shared by all threads. On the padded grid,
// output (oy, ox) at tap (ky, kx) reads plane index (oy + ky) * Wp + ox + kx, so kMR consecutive
// grid pixels read kMR consecutive floats, which the micro-kernel broadcasts straight from the
// planes. K runs channel-major as in the OIHW weight (k = ci * taps + tap), so the taps of one
// channel read the same few lines. The Wp - Wo extra grid columns per row are computed and
// dropped. pack_b(q, ...) packs K-block q = channels [q * cb, q * cb + cc) in that order.
template <class Kern, class PackB>
void run_planes(const float* x, const packed::PlaneGeometry& g, const Conv2dParams& p, int64_t cb,
                PackB pack_b, const WeightSource& w, const float* bias, float* y, bool parallel) {
  using packed::ceil_div;
  constexpr int kMR = Kern::kMR, kNR = Kern::kNR;
  const int64_t N = p.cout, taps = p.kh * p.kw, nkb = ceil_div(g.cin, cb);
  int64_t off[64];  // per tap: offset of its input on the grid
  SDPAL_CHECK(taps <= 64, "packed conv2d: kernels over 64 taps are not supported");
  for (int64_t t = 0; t < taps; ++t) off[t] = t / p.kw * g.Wp + t % p.kw;
  const int64_t nc = ceil_div(ceil_div(N, ceil_div(N, Kern::kNCMax)), kNR) * kNR;
  float* bbuf = packed::scratch(packed::Scratch::B, nc * cb * taps);
  float* planes = packed::scratch(packed::Scratch::A, g.B * cb * g.plane);
  const int64_t tiles = g.B * g.tiles;
#pragma omp parallel num_threads(parallel ? omp_get_max_threads() : 1)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    packed::WeightReader reader(w, kNR, cb * taps);
    // The slack after each plane is never written below: zero it once.
#pragma omp for
    for (int64_t pl = 0; pl < g.B * cb; ++pl)
      std::fill(planes + pl * g.plane + g.Hp * g.Wp, planes + (pl + 1) * g.plane, 0.f);
    for (int64_t jc = 0; jc < N; jc += nc) {
      const int64_t ncur = std::min(nc, N - jc), panels = ceil_div(ncur, kNR);
      for (int64_t q = 0; q < nkb; ++q) {
        const int64_t c0 = q * cb, cc = std::min(cb, g.cin - c0);
#pragma omp for schedule(dynamic, 1) nowait
        for (int64_t jp = 0; jp < panels; ++jp) {
          const int nvalid = static_cast<int>(std::min<int64_t>(kNR, ncur - jp * kNR));
          pack_b(q, jc + jp * kNR, nvalid, bbuf + jp * kNR * cc * taps, reader);
        }
        // Planes, one padded input row at a time: 16 pixels x 16 channels per block.
#pragma omp for schedule(dynamic, 4)
        for (int64_t r = 0; r < g.B * g.Hp; ++r) {
          const int64_t b = r / g.Hp, iyp = r % g.Hp, iy = iyp - p.pad_t;
          for (int64_t ix0 = 0; ix0 < g.Wp; ix0 += 16)
            for (int64_t ci0 = 0; ci0 < cc; ci0 += 16) {
              const float* px[16];
              for (int i = 0; i < 16; ++i) {
                const int64_t ix = ix0 + i - p.pad_l;
                px[i] = iy >= 0 && iy < g.H && ix >= 0 && ix < g.W && ix0 + i < g.Wp
                            ? x + ((b * g.H + iy) * g.W + ix) * g.cin + c0 + ci0
                            : nullptr;
              }
              Kern::pack_plane_block(px, static_cast<int>(std::min<int64_t>(16, cc - ci0)),
                                     static_cast<int>(std::min<int64_t>(16, g.Wp - ix0)),
                                     planes + (b * cb + ci0) * g.plane + iyp * g.Wp + ix0, g.plane);
            }
        }
        // Tiles [t0, t1) times panels [jp0, jp1).
        auto compute = [&](int64_t t0, int64_t t1, int64_t jp0, int64_t jp1) {
          for (int64_t jp = jp0; jp < jp1; ++jp) {
            const int64_t j0 = jc + jp * kNR;
            const int ncols = static_cast<int>(std::min<int64_t>(kNR, N - j0));
            for (int64_t tile = t0; tile < t1; ++tile) {
              const int64_t b = tile / g.tiles, gp0 = tile % g.tiles * kMR;
              float* rows[kMR];
              for (int i = 0; i < kMR; ++i) {
                const int64_t gp = gp0 + i, oy = gp / g.Wp, ox = gp % g.Wp;
                rows[i] =
                    gp < g.grid && ox < g.Wo ? y + ((b * g.Ho + oy) * g.Wo + ox) * N + j0 : nullptr;
              }
              const packed::ATile at{planes + b * cb * g.plane + gp0, cc, g.plane,
                                     static_cast<int>(taps), off};
              Kern::micro_kernel(at, bbuf + jp * kNR * cc * taps, rows, ncols,
                                 q == 0 && bias ? bias + j0 : nullptr, q > 0);
            }
          }
        };
        if (tiles >= 4 * nt) {
          // Each thread takes an equal share of the tiles, 8 at a time over all panels (their
          // plane lines stay in L2 while the panels stream by).
          const int64_t t1 = tiles * (t + 1) / nt;
          for (int64_t t0 = tiles * t / nt; t0 < t1; t0 += 8)
            compute(t0, std::min(t1, t0 + 8), 0, panels);
#pragma omp barrier
        } else {
          const int64_t parts = std::clamp<int64_t>(ceil_div(2 * nt, tiles), 1, panels);
#pragma omp for schedule(dynamic, 1)
          for (int64_t task = 0; task < tiles * parts; ++task) {
            const int64_t tile = task / parts, part = task % parts;
            compute(tile, tile + 1, panels * part / parts, panels * (part + 1) / parts);
          }
        }
      }
    }
  }
}

// y[M, N] = x[M, K] * W^T + b for K > 0 (the caller checked the source and handles empty sizes).
template <class Kern>
void gemm_level(const float* x, int64_t M, int64_t K, const WeightSource& w, const float* bias,
                float* y) {
  using packed::ceil_div;
  constexpr int kMR = Kern::kMR, kAS = Kern::kAS;
  const int64_t N = w.rows;
  // Balanced K-blocks of at most about kKC, starting at multiples of 16 (whole transposes, and
  // byte-aligned packed indices when K is a multiple of 8).
  const int64_t nkb = std::max<int64_t>(1, ceil_div(K, Kern::kKC));
  auto k0_of = [&](int64_t p) { return p == nkb ? K : K * p / nkb / 16 * 16; };
  auto kc_of = [&](int64_t p) { return k0_of(p + 1) - k0_of(p); };
  int64_t kc_max = 0;
  for (int64_t p = 0; p < nkb; ++p) kc_max = std::max(kc_max, kc_of(p));
  auto ident = [](int64_t j) { return j; };
  auto pack_a = [&](int64_t p, int64_t i0, int64_t mc, float* dst) {
    const int64_t k0 = k0_of(p), kc = kc_of(p);
    for (int64_t ip = 0; ip * kMR < mc; ++ip) {
      const float* rows[kMR];
      for (int i = 0; i < kMR; ++i) {
        const int64_t m = ip * kMR + i;
        rows[i] = m < mc ? x + (i0 + m) * K + k0 : nullptr;
      }
      Kern::pack_a_rows(rows, kc, ident, dst + ip * kAS * kc);
    }
  };
  auto prefetch_a = [&](int64_t p, int64_t i0, int64_t mc, int64_t part, int64_t parts) {
    const int64_t k0 = k0_of(p), per_row = kc_of(p) / 16 + 2;  // 64-byte lines, unaligned
    const int64_t total = mc * per_row;
    for (int64_t l = total * part / parts; l < total * (part + 1) / parts; ++l)
      __builtin_prefetch(x + (i0 + l / per_row) * K + k0 + l % per_row * 16, 0, 2);  // to L2
  };
  auto pack_b = [&](int64_t p, int64_t n0, int nvalid, float* dst, packed::WeightReader& rd) {
    const int64_t k0 = k0_of(p), kc = kc_of(p);
    int64_t ld = 0;
    const float* rows = rd.rows(n0, nvalid, k0, kc, ld);
    Kern::pack_b_panel(rows, ld, nvalid, kc, ident, dst);
  };
  run_blocked<Kern>(M, N, nkb, kc_max, kc_max, kc_of, pack_a, prefetch_a, pack_b, w, bias, y,
                    packed::worth_threads(M, N, K));
}

// Convolution of NHWC x (sizes s) with the OIHW weight in w into y [B, Ho, Wo, cout].
template <class Kern>
void conv_level(const float* xd, const packed::ConvShape& s, const WeightSource& w,
                const float* bias, const Conv2dParams& p, float* y) {
  using packed::ceil_div;
  constexpr int kMR = Kern::kMR, kAS = Kern::kAS;
  const int64_t B = s.B, H = s.H, W = s.W, cin = s.cin, Ho = s.Ho, Wo = s.Wo;
  const int64_t taps = p.kh * p.kw;
  const int64_t M = B * Ho * Wo, N = p.cout;
  const int64_t cb = packed::conv_channel_block(cin, taps, Kern::kKC), nkb = ceil_div(cin, cb);
  auto cc_of = [&](int64_t q) { return std::min(cb, cin - q * cb); };
  auto kc_of = [&](int64_t q) { return cc_of(q) * taps; };
  if (p.stride == 1 && packed::use_planes(Wo, p)) {
    packed::PlaneGeometry g{B, H, W, cin, Ho, Wo, H + p.pad_t + p.pad_b, W + p.pad_l + p.pad_r,
                            0, 0, 0};
    g.plane = ceil_div(g.Hp * g.Wp + kMR + p.kw, 16) * 16;
    g.grid = Ho * g.Wp;
    g.tiles = ceil_div(g.grid, kMR);
    auto pack_b_oihw = [&](int64_t q, int64_t n0, int nvalid, float* dst,
                           packed::WeightReader& rd) {
      const int64_t kc = kc_of(q);
      int64_t ld = 0;
      const float* rows = rd.rows(n0, nvalid, q * cb * taps, kc, ld);
      Kern::pack_b_panel(
          rows, ld, nvalid, kc, [](int64_t j) { return j; }, dst);
    };
    run_planes<Kern>(xd, g, p, cb, pack_b_oihw, w, bias, y,
                     packed::worth_threads(M, N, cin * taps));
    return;
  }
  // K-block q holds channels [c0, c0 + cc) at every tap, packed tap-major: k = tap * cc + ci.
  auto pack_a = [&](int64_t q, int64_t i0, int64_t mc, float* dst) {
    const int64_t c0 = q * cb, cc = cc_of(q), kc = cc * taps;
    for (int64_t ip = 0; ip * kMR < mc; ++ip) {
      int64_t iy0[kMR], ix0[kMR], base[kMR];  // per output pixel: top-left input position
      for (int i = 0; i < kMR; ++i) {
        const int64_t m = i0 + ip * kMR + i;
        base[i] = -1;
        if (ip * kMR + i >= mc) continue;
        const int64_t b = m / (Ho * Wo), oy = m / Wo % Ho, ox = m % Wo;
        iy0[i] = oy * p.stride - p.pad_t;
        ix0[i] = ox * p.stride - p.pad_l;
        base[i] = b * H;
      }
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t ky = t / p.kw, kx = t % p.kw;
        const float* rows[kMR];
        for (int i = 0; i < kMR; ++i) {
          rows[i] = nullptr;
          if (base[i] < 0) continue;
          const int64_t iy = iy0[i] + ky, ix = ix0[i] + kx;
          if (iy >= 0 && iy < H && ix >= 0 && ix < W)
            rows[i] = xd + ((base[i] + iy) * W + ix) * cin + c0;
        }
        Kern::pack_a_rows(
            rows, cc, [&](int64_t j) { return t * cc + j; }, dst + ip * kAS * kc);
      }
    }
  };
  // The input rows of the taps' centre column (the other columns are neighbouring pixels of the
  // same rows, mostly the same lines).
  auto prefetch_a = [&](int64_t q, int64_t i0, int64_t mc, int64_t part, int64_t parts) {
    const int64_t c0 = q * cb, per_row = cc_of(q) / 16 + 1, per_pixel = p.kh * per_row;
    const int64_t total = mc * per_pixel;
    for (int64_t l = total * part / parts; l < total * (part + 1) / parts; ++l) {
      const int64_t m = i0 + l / per_pixel, ky = l % per_pixel / per_row;
      const int64_t b = m / (Ho * Wo), oy = m / Wo % Ho, ox = m % Wo;
      const int64_t iy = oy * p.stride - p.pad_t + ky, ix = ox * p.stride - p.pad_l + p.kw / 2;
      if (iy >= 0 && iy < H && ix >= 0 && ix < W)
        __builtin_prefetch(xd + ((b * H + iy) * W + ix) * cin + c0 + l % per_row * 16, 0, 2);
    }
  };
  // The weight row holds (ci, tap) pairs ci-major: element j of the span is ci = j / taps,
  // tap = j % taps, which goes to packed row tap * cc + ci.
  auto pack_b = [&](int64_t q, int64_t n0, int nvalid, float* dst, packed::WeightReader& rd) {
    const int64_t c0 = q * cb, cc = cc_of(q), kc = cc * taps;
    int64_t ld = 0;
    const float* rows = rd.rows(n0, nvalid, c0 * taps, kc, ld);
    Kern::pack_b_panel(
        rows, ld, nvalid, kc, [&](int64_t j) { return j % taps * cc + j / taps; }, dst);
  };
  const int64_t kc_max = cb * taps;
  run_blocked<Kern>(M, N, nkb, kc_max, kc_max, kc_of, pack_a, prefetch_a, pack_b, w, bias, y,
                    packed::worth_threads(M, N, cin * taps));
}

// Bytes of the packing buffers for an output of N columns over K (see packed_buffer_bytes).
template <class Kern>
int64_t buffer_bytes_level(int64_t N, int64_t K, WeightSource::Kind kind, int threads,
                           int64_t taps) {
  using packed::ceil_div;
  const int64_t kc = taps > 1         ? packed::conv_channel_block(K / taps, taps, Kern::kKC) * taps
                     : K <= Kern::kKC ? K
                                      : ceil_div(K, ceil_div(K, Kern::kKC)) + 16;
  const int64_t nc = ceil_div(ceil_div(N, ceil_div(N, Kern::kNCMax)), Kern::kNR) * Kern::kNR;
  const int64_t per_thread = ceil_div(Kern::kMC, Kern::kMR) * Kern::kAS * kc +
                             (kind == WeightSource::Kind::F32 ? 0 : Kern::kNR * kc);
  return static_cast<int64_t>(sizeof(float)) * (nc * kc + threads * per_thread);
}

#endif  // SDPAL_KERNELS_PACKED_GEMM_INL_H_
