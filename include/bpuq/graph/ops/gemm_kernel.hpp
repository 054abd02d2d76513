// Float GEMM kernels of the convolutions: wide_gemm (portable vector extensions, short and
// wide products) and packed_gemm (AVX-512: packed weights, fused bias and clamp, tiles
// vectorized along N or, for narrow products, along M). docs/GRAPH.md lists which path runs when.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "../../core/config.hpp"
#include "../context.hpp"

// GCC/Clang vector extensions give portable SIMD without an intrinsics dependency.
#if defined(__GNUC__) || defined(__clang__)
#define BPUQ_HAS_VECTOR_EXTENSIONS 1
#else
#define BPUQ_HAS_VECTOR_EXTENSIONS 0
#endif

BPUQ_NAMESPACE_BEGIN

namespace graph {
namespace ops {
namespace wide_gemm {

#if BPUQ_HAS_VECTOR_EXTENSIONS
#if defined(__AVX512F__)
constexpr int kLanes = 16;
#else
constexpr int kLanes = 8;
#endif
typedef float Vec __attribute__((vector_size(kLanes * 4), aligned(4)));
/// Each tile is MR rows x (2 vectors) columns of C kept in registers over the whole K loop.
constexpr int kTileCols = 2 * kLanes;
constexpr int kTileRows = 6;

/// Row k of B: either base + k * ld (a matrix) or rows[k] + offset (rows anywhere, e.g.
/// shifted views of a padded image that stand in for an im2col matrix).
struct RowsOfB {
    const float* base = nullptr;
    std::int64_t ld = 0;
    const float* const* rows = nullptr;
    std::int64_t offset = 0;
    const float* row(std::int64_t k) const { return rows ? rows[k] + offset : base + k * ld; }
    RowsOfB shifted(std::int64_t cols) const {
        RowsOfB r = *this;
        if (rows) r.offset += cols;
        else r.base += cols;
        return r;
    }
};

template <int MR>
inline void tile(const float* A, std::int64_t lda, const RowsOfB& B, float* C, std::int64_t ldc, std::int64_t K) {
    Vec acc0[MR], acc1[MR];
    for (int i = 0; i < MR; ++i) acc0[i] = acc1[i] = Vec{};
    for (std::int64_t k = 0; k < K; ++k) {
        Vec b0, b1;
        const float* br = B.row(k);
        std::memcpy(&b0, br, sizeof(Vec));
        std::memcpy(&b1, br + kLanes, sizeof(Vec));
        for (int i = 0; i < MR; ++i) {
            const float a = A[i * lda + k];
            acc0[i] += a * b0;
            acc1[i] += a * b1;
        }
    }
    for (int i = 0; i < MR; ++i) {
        std::memcpy(C + i * ldc, &acc0[i], sizeof(Vec));
        std::memcpy(C + i * ldc + kLanes, &acc1[i], sizeof(Vec));
    }
}

/// C[m x n] = A[m x k] * B[k x n], A and C row-major, B given by its rows.
inline void gemm_rows(const float* A, std::int64_t lda, const RowsOfB& B, float* C, std::int64_t ldc, std::int64_t M,
                      std::int64_t N, std::int64_t K) {
    std::int64_t n0 = 0;
    for (; n0 + kTileCols <= N; n0 += kTileCols) {
        const RowsOfB b = B.shifted(n0);
        std::int64_t m0 = 0;
        for (; m0 + kTileRows <= M; m0 += kTileRows) tile<kTileRows>(A + m0 * lda, lda, b, C + m0 * ldc + n0, ldc, K);
        const float* a = A + m0 * lda;
        float* c = C + m0 * ldc + n0;
        switch (M - m0) {
            case 5: tile<5>(a, lda, b, c, ldc, K); break;
            case 4: tile<4>(a, lda, b, c, ldc, K); break;
            case 3: tile<3>(a, lda, b, c, ldc, K); break;
            case 2: tile<2>(a, lda, b, c, ldc, K); break;
            case 1: tile<1>(a, lda, b, c, ldc, K); break;
            default: break;
        }
    }
    for (std::int64_t m = 0; m < M && n0 < N; ++m)
        for (std::int64_t n = n0; n < N; ++n) {
            float acc = 0.f;
            for (std::int64_t k = 0; k < K; ++k) acc += A[m * lda + k] * B.row(k)[n];
            C[m * ldc + n] = acc;
        }
}

/// C[m x n] = A[m x k] * B[k x n] (row-major, leading dimensions given).
inline void gemm(const float* A, std::int64_t lda, const float* B, std::int64_t ldb, float* C, std::int64_t ldc,
                 std::int64_t M, std::int64_t N, std::int64_t K) {
    RowsOfB b;
    b.base = B;
    b.ld = ldb;
    gemm_rows(A, lda, b, C, ldc, M, N, K);
}
#endif

/// True when this kernel should be used for a product with n columns and depth k: wide
/// and shallow (measured: it wins for k <= 144 at n >= 729, Eigen wins for deep products).
constexpr bool suits(std::int64_t n, std::int64_t k) {
#if BPUQ_HAS_VECTOR_EXTENSIONS
    return n >= 512 && k <= 256;
#else
    return (void)n, (void)k, false;
#endif
}

}  // namespace wide_gemm

/// AVX-512 GEMM with the convolution epilogue fused: C = clamp(A * B + bias[row], lo, hi).
/// A (the weights) is packed into panels of kRows rows so that each k step broadcasts kRows
/// consecutive floats; B is read in place by rows (a matrix or shifted image rows). A tile
/// of kRows x (up to 3 vectors) stays in registers over a block of k; column tails use
/// masked loads and stores (no scalar remainder).
namespace packed_gemm {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr int kRows = 8;
constexpr int kMaxVectors = 3;                       // 8 x 3 accumulators + 3 B vectors + 1 broadcast
constexpr std::int64_t kTileCols = kMaxVectors * kLanes;
constexpr std::int64_t kDepthBlock = 256;            // k per pass: a B micro-panel stays near L1
constexpr std::int64_t kColumnTilesPerTask = 4;      // columns revisited by every k pass

/// Floats in A packed in panels of panel_rows rows (the last panel zero-padded).
inline std::int64_t packed_size(std::int64_t M, std::int64_t K, std::int64_t panel_rows) {
    return (M + panel_rows - 1) / panel_rows * panel_rows * K;
}

/// Writes A (M x K, leading dimension lda) as panels of panel_rows rows: panel p holds
/// rows [p*panel_rows, (p+1)*panel_rows) as K groups of panel_rows floats.
inline void pack_a_into(const float* A, std::int64_t lda, std::int64_t M, std::int64_t K, std::int64_t panel_rows,
                        float* packed) {
    const std::int64_t panels = (M + panel_rows - 1) / panel_rows;
    for (std::int64_t p = 0; p < panels; ++p) {
        const std::int64_t rows = std::min<std::int64_t>(panel_rows, M - p * panel_rows);
        float* dst = packed + p * K * panel_rows;
        for (std::int64_t k = 0; k < K; ++k)
            for (std::int64_t i = 0; i < panel_rows; ++i)
                dst[k * panel_rows + i] = i < rows ? A[(p * panel_rows + i) * lda + k] : 0.f;
    }
}

/// A packed by pack_a_into (so a tile's k step reads one forward stream) into a per-thread
/// buffer reused by every call (no allocation per Conv); the pointer is valid until this
/// thread packs again.
inline const float* pack_a(const float* A, std::int64_t lda, std::int64_t M, std::int64_t K,
                           std::int64_t panel_rows = kRows) {
    thread_local std::vector<float> packed;
    const std::size_t size = static_cast<std::size_t>(packed_size(M, K, panel_rows));
    if (packed.size() < size) packed.resize(size);
    pack_a_into(A, lda, M, K, panel_rows, packed.data());
    return packed.data();
}

/// What a tile adds and clamps after the last k block. The bias is added to the finished sum
/// (not used as its start) so that results round as the Eigen/vector-extension paths did.
struct BiasClamp {
    const float* bias = nullptr;  // per row of C
    float lo = 0, hi = 0;
};

/// One tile: rows [0, rows) of C (rows <= kRows) and NV vectors of columns from n0, the last
/// vector masked by `tail`. first: start from zero (else from C); last: add bias, clamp.
template <int NV>
inline void tile(const float* ap, const wide_gemm::RowsOfB& B, std::int64_t n0, std::int64_t k0, std::int64_t kc,
                 float* C, std::int64_t ldc, int rows, __mmask16 tail, bool first, bool last, const BiasClamp& ep) {
    // every index into acc must be a compile-time constant after unrolling, or GCC keeps the
    // accumulators in memory and stores them on every k step
    __m512 acc[kRows][NV];
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i)
#pragma GCC unroll 3
        for (int v = 0; v < NV; ++v) {
            const __mmask16 m = v == NV - 1 ? tail : __mmask16(0xFFFF);
            if (i >= rows || first) acc[i][v] = _mm512_setzero_ps();
            else acc[i][v] = _mm512_maskz_loadu_ps(m, C + i * ldc + v * kLanes);
        }
    for (std::int64_t k = 0; k < kc; ++k) {
        const float* br = B.row(k0 + k) + n0;
        __m512 b[NV];
#pragma GCC unroll 3
        for (int v = 0; v < NV; ++v)
            b[v] = v == NV - 1 ? _mm512_maskz_loadu_ps(tail, br + v * kLanes) : _mm512_loadu_ps(br + v * kLanes);
        const float* a = ap + k * kRows;
#pragma GCC unroll 8
        for (int i = 0; i < kRows; ++i) {
            const __m512 av = _mm512_set1_ps(a[i]);
#pragma GCC unroll 3
            for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(av, b[v], acc[i][v]);
        }
    }
    const __m512 lo = _mm512_set1_ps(ep.lo), hi = _mm512_set1_ps(ep.hi);
#pragma GCC unroll 8
    for (int i = 0; i < kRows; ++i) {
        if (i >= rows) continue;
        const __m512 bias = _mm512_set1_ps(last && ep.bias ? ep.bias[i] : 0.f);
#pragma GCC unroll 3
        for (int v = 0; v < NV; ++v) {
            __m512 r = acc[i][v];
            if (last) r = _mm512_min_ps(hi, _mm512_max_ps(lo, _mm512_add_ps(r, bias)));
            if (v == NV - 1) _mm512_mask_storeu_ps(C + i * ldc + v * kLanes, tail, r);
            else _mm512_storeu_ps(C + i * ldc + v * kLanes, r);
        }
    }
}

/// C[M x N] = clamp(A * B + bias, lo, hi) with A packed by pack_a (K columns), B by rows.
/// Column tiles are split over the context's threads (row panels when there are few).
inline void gemm(const float* packed_a, const wide_gemm::RowsOfB& B, float* C, std::int64_t ldc, std::int64_t M,
                 std::int64_t N, std::int64_t K, const float* bias, float lo, float hi, const ExecContext& ctx) {
    if (M <= 0 || N <= 0) return;
    const std::int64_t panels = (M + kRows - 1) / kRows;
    const std::int64_t col_tiles = (N + kTileCols - 1) / kTileCols;
    const std::int64_t col_tasks = (col_tiles + kColumnTilesPerTask - 1) / kColumnTilesPerTask;
    // a task: a range of column tiles x a range of row panels
    const std::int64_t row_tasks = col_tasks >= ctx.threads() ? 1 : std::min<std::int64_t>(panels, ctx.threads());
    const std::int64_t panels_per_task = (panels + row_tasks - 1) / row_tasks;
    ctx.parallel_for(col_tasks * row_tasks, 1, [&](std::int64_t t0, std::int64_t t1) {
        for (std::int64_t t = t0; t < t1; ++t) {
            const std::int64_t ct = t / row_tasks, rt = t % row_tasks;
            const std::int64_t p0 = rt * panels_per_task, p1 = std::min(panels, p0 + panels_per_task);
            const std::int64_t c0 = ct * kColumnTilesPerTask, c1 = std::min(col_tiles, c0 + kColumnTilesPerTask);
            for (std::int64_t k0 = 0; k0 < std::max<std::int64_t>(K, 1); k0 += kDepthBlock) {
                const std::int64_t kc = std::min(kDepthBlock, K - k0);
                const bool first = k0 == 0, last = k0 + kDepthBlock >= K;
                for (std::int64_t c = c0; c < c1; ++c) {
                    const std::int64_t n0 = c * kTileCols, cols = std::min(kTileCols, N - n0);
                    const int vectors = int((cols + kLanes - 1) / kLanes);
                    const std::int64_t tail_cols = cols - (vectors - 1) * kLanes;
                    const __mmask16 tail = __mmask16((1u << tail_cols) - 1);
                    for (std::int64_t p = p0; p < p1; ++p) {
                        const float* ap = packed_a + (p * K + k0) * kRows;
                        float* cp = C + p * kRows * ldc + n0;
                        const int rows = int(std::min<std::int64_t>(kRows, M - p * kRows));
                        BiasClamp ep;
                        ep.bias = bias ? bias + p * kRows : nullptr;
                        ep.lo = lo, ep.hi = hi;
                        if (vectors == 3) tile<3>(ap, B, n0, k0, kc, cp, ldc, rows, tail, first, last, ep);
                        else if (vectors == 2) tile<2>(ap, B, n0, k0, kc, cp, ldc, rows, tail, first, last, ep);
                        else tile<1>(ap, B, n0, k0, kc, cp, ldc, rows, tail, first, last, ep);
                    }
                }
            }
        }
    });
}

/// Narrow products (few columns, e.g. 7x7 feature maps: 49 columns fill 49 of 64 lanes)
/// vectorize along M instead: a tile is kNarrowVectors vectors of rows x NR columns, A is
/// packed in panels of kNarrowRows rows (one k step = kNarrowVectors vector loads) and
/// each B value is broadcast. The tile is transposed through a small buffer on the store.
constexpr int kNarrowVectors = 2;
constexpr std::int64_t kNarrowRows = kNarrowVectors * kLanes;
constexpr int kNarrowCols = 12;  // 2 x 12 accumulators
constexpr std::int64_t kNarrowDepthBlock = 1024;  // few columns: the B panel is small, A streams from L2

template <int NR>
inline void narrow_tile(const float* ap, const wide_gemm::RowsOfB& B, std::int64_t n0, std::int64_t k0, std::int64_t kc,
                        float* C, std::int64_t ldc, int rows, bool first, bool last, const BiasClamp& ep) {
    __m512 acc[NR][kNarrowVectors];
    alignas(64) float tmp[NR][kNarrowRows];
    if (!first)  // partial sums of earlier k blocks; rows past M are junk and never stored
        for (int j = 0; j < NR; ++j)
            for (int i = 0; i < kNarrowRows; ++i) tmp[j][i] = i < rows ? C[i * ldc + n0 + j] : 0.f;
#pragma GCC unroll 12
    for (int j = 0; j < NR; ++j)
#pragma GCC unroll 2
        for (int v = 0; v < kNarrowVectors; ++v) {
            acc[j][v] = first ? _mm512_setzero_ps() : _mm512_load_ps(&tmp[j][v * kLanes]);
        }
    for (std::int64_t k = 0; k < kc; ++k) {
        const float* br = B.row(k0 + k) + n0;
        const float* a = ap + k * kNarrowRows;
        __m512 av[kNarrowVectors];
#pragma GCC unroll 2
        for (int v = 0; v < kNarrowVectors; ++v) av[v] = _mm512_loadu_ps(a + v * kLanes);
#pragma GCC unroll 12
        for (int j = 0; j < NR; ++j) {
            const __m512 bv = _mm512_set1_ps(br[j]);
#pragma GCC unroll 2
            for (int v = 0; v < kNarrowVectors; ++v) acc[j][v] = _mm512_fmadd_ps(av[v], bv, acc[j][v]);
        }
    }
    const __m512 lo = _mm512_set1_ps(ep.lo), hi = _mm512_set1_ps(ep.hi);
    __m512 bias[kNarrowVectors];
#pragma GCC unroll 2
    for (int v = 0; v < kNarrowVectors; ++v) {
        const int left = rows - v * kLanes;
        const __mmask16 m = left >= kLanes ? __mmask16(0xFFFF) : left <= 0 ? __mmask16(0) : __mmask16((1u << left) - 1);
        bias[v] = last && ep.bias ? _mm512_maskz_loadu_ps(m, ep.bias + v * kLanes) : _mm512_setzero_ps();
    }
#pragma GCC unroll 12
    for (int j = 0; j < NR; ++j)
#pragma GCC unroll 2
        for (int v = 0; v < kNarrowVectors; ++v) {
            __m512 r = acc[j][v];
            if (last) r = _mm512_min_ps(hi, _mm512_max_ps(lo, _mm512_add_ps(r, bias[v])));
            _mm512_store_ps(&tmp[j][v * kLanes], r);
        }
    for (int i = 0; i < rows; ++i)
        for (int j = 0; j < NR; ++j) C[i * ldc + n0 + j] = tmp[j][i];
}

template <int NR>
inline void narrow_tile_dispatch(int cols, const float* ap, const wide_gemm::RowsOfB& B, std::int64_t n0,
                                 std::int64_t k0, std::int64_t kc, float* C, std::int64_t ldc, int rows, bool first,
                                 bool last, const BiasClamp& ep) {
    if (cols == NR) narrow_tile<NR>(ap, B, n0, k0, kc, C, ldc, rows, first, last, ep);
    else if constexpr (NR > 1) narrow_tile_dispatch<NR - 1>(cols, ap, B, n0, k0, kc, C, ldc, rows, first, last, ep);
}

/// True when a product with N columns and M rows fills clearly more SIMD lanes vectorized
/// along M (e.g. M 160, N 49) than along N.
inline bool prefers_narrow(std::int64_t M, std::int64_t N) {
    const std::int64_t col_lanes = (N + kLanes - 1) / kLanes * kLanes;
    const std::int64_t row_lanes = (M + kNarrowRows - 1) / kNarrowRows * kNarrowRows;
    return N <= 4 * kTileCols && double(N) / double(col_lanes) < 0.9 * double(M) / double(row_lanes);
}

/// Same contract as gemm(), but A packed with pack_a(..., kNarrowRows); row panels are
/// split over the context's threads.
inline void gemm_narrow(const float* packed_a, const wide_gemm::RowsOfB& B, float* C, std::int64_t ldc, std::int64_t M,
                        std::int64_t N, std::int64_t K, const float* bias, float lo, float hi, const ExecContext& ctx) {
    if (M <= 0 || N <= 0) return;
    const std::int64_t panels = (M + kNarrowRows - 1) / kNarrowRows;
    ctx.parallel_for(panels, 1, [&](std::int64_t p0, std::int64_t p1) {
        for (std::int64_t k0 = 0; k0 < std::max<std::int64_t>(K, 1); k0 += kNarrowDepthBlock) {
            const std::int64_t kc = std::min(kNarrowDepthBlock, K - k0);
            const bool first = k0 == 0, last = k0 + kNarrowDepthBlock >= K;
            for (std::int64_t p = p0; p < p1; ++p) {
                const float* ap = packed_a + (p * K + k0) * kNarrowRows;
                float* cp = C + p * kNarrowRows * ldc;
                const int rows = int(std::min<std::int64_t>(kNarrowRows, M - p * kNarrowRows));
                BiasClamp ep;
                ep.bias = bias ? bias + p * kNarrowRows : nullptr;
                ep.lo = lo, ep.hi = hi;
                for (std::int64_t n0 = 0; n0 < N; n0 += kNarrowCols) {
                    const int cols = int(std::min<std::int64_t>(kNarrowCols, N - n0));
                    narrow_tile_dispatch<kNarrowCols>(cols, ap, B, n0, k0, kc, cp, ldc, rows, first, last, ep);
                }
            }
        }
    });
}

/// A packed in panels of panel_rows rows: the copy cached by the running Executor when A
/// lies in a constant tensor starting at `constant` (a graph initializer), else packed now
/// into this thread's buffer.
inline const float* packed_weights(const float* A, std::int64_t lda, std::int64_t M, std::int64_t K,
                                   std::int64_t panel_rows, const void* constant) {
    PackedWeightCache* cache = PackedWeightCache::current();
    if (!constant || !cache || !cache->is_constant(constant)) return pack_a(A, lda, M, K, panel_rows);
    return cache->find_or_pack(A, lda, M, K, panel_rows, static_cast<std::size_t>(packed_size(M, K, panel_rows)),
                               [&](float* dst) { pack_a_into(A, lda, M, K, panel_rows, dst); });
}

/// C[M x N] = clamp(A * B + bias, lo, hi) with whichever kernel suits the shape; A is packed
/// (or its cached packing used, see packed_weights).
inline void gemm_auto(const float* A, std::int64_t lda, const wide_gemm::RowsOfB& B, float* C, std::int64_t ldc,
                      std::int64_t M, std::int64_t N, std::int64_t K, const float* bias, float lo, float hi,
                      const void* constant, const ExecContext& ctx) {
    if (prefers_narrow(M, N))
        gemm_narrow(packed_weights(A, lda, M, K, kNarrowRows, constant), B, C, ldc, M, N, K, bias, lo, hi, ctx);
    else gemm(packed_weights(A, lda, M, K, kRows, constant), B, C, ldc, M, N, K, bias, lo, hi, ctx);
}
#endif

/// True when packed_gemm is compiled in (AVX-512 builds).
constexpr bool available() {
#if defined(__AVX512F__)
    return true;
#else
    return false;
#endif
}

}  // namespace packed_gemm
}  // namespace ops
}  // namespace graph

BPUQ_NAMESPACE_END
