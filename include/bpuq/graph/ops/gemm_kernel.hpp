// A register-blocked float GEMM for short, wide products (C = A * B, A small, B with many
// columns): the 1x1 / im2col convolutions on large feature maps, where it beats Eigen's
// general packing GEMM (measured in docs/PERFORMANCE.md). Narrow products stay on Eigen.
#pragma once

#include <cstdint>
#include <cstring>

#include "../../core/config.hpp"

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
}  // namespace ops
}  // namespace graph

BPUQ_NAMESPACE_END
