// Normative scalar GEMM / MatMul: C[M][N] = requantize((A - zp_a)(B - zp_b)^T), B stored [N][K].
#pragma once

#include <cstdint>
#include <string>

#include "../params.hpp"

BPUQ_NAMESPACE_BEGIN

/// Sizes of one GEMM; `lda`, `ldb`, `ldc` default to the packed row lengths (K, K, N).
struct GemmGeometry {
    int m = 1, n = 1, k = 1;
    std::int64_t macs() const noexcept { return std::int64_t(m) * n * k; }
    void validate() const {
        BPUQ_CHECK(m > 0 && n > 0 && k > 0, "kernels.gemm",
                   "gemm sizes M " + std::to_string(m) + ", N " + std::to_string(n) + ", K " + std::to_string(k) +
                       " must be positive");
        BPUQ_CHECK(k <= (1 << 16), "kernels.gemm",
                   "gemm K " + std::to_string(k) + " above 65536 could overflow the int32 accumulator");
    }
    /// With two zero points every int8 term can reach 255 * 255: K must stay below 33025.
    void validate_zero_points(std::int32_t zp_b) const {
        BPUQ_CHECK(zp_b == 0 || k <= 33025, "kernels.gemm",
                   "gemm K " + std::to_string(k) + " with a non-zero second zero point could overflow int32");
    }
};

namespace reference {

/// C[i][j] = requantize(sum_k (A[i][k] - zp_a) * (B[j][k] - zp_b), j): row j of B is output
/// channel j (ONNX Gemm with transB = 1, or MatMul against a transposed constant). Weights
/// have zp_b = 0; a MatMul of two activations passes the second operand's zero point.
template <class Round = RoundHalfAwayFromZero, class TA, class TB, class TOut>
inline void gemm(const GemmGeometry& g, const TA* a, std::int32_t zp_a, const TB* b, std::int32_t zp_b,
                 const Requantization& rq, TOut* c) {
    static_assert(is_activation_type<TA> && is_activation_type<TB>, "bpuq: gemm takes int8/int16 operands");
    static_assert(is_output_type<TOut>, "bpuq: gemm writes int8, int16 or int32");
    g.validate();
    if (sizeof(TA) == 1 && sizeof(TB) == 1) g.validate_zero_points(zp_b);
    using Acc = accumulator_t<TA, TB>;
    for (int i = 0; i < g.m; ++i)
        for (int j = 0; j < g.n; ++j) {
            Acc acc = 0;
            const TA* ar = a + std::int64_t(i) * g.k;
            const TB* br = b + std::int64_t(j) * g.k;
            for (int p = 0; p < g.k; ++p)
                acc += static_cast<Acc>(static_cast<std::int32_t>(ar[p]) - zp_a) *
                       static_cast<Acc>(static_cast<std::int32_t>(br[p]) - zp_b);
            c[std::int64_t(i) * g.n + j] = requantize_output<TOut, Round>(acc, rq, static_cast<std::size_t>(j));
        }
}

}  // namespace reference
BPUQ_NAMESPACE_END
