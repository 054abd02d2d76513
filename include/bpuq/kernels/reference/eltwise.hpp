// Normative scalar elementwise add / sub / mul of two quantized tensors with different scales.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "../params.hpp"

BPUQ_NAMESPACE_BEGIN

enum class EltwiseOp { add, sub, mul };

/// Precomputed integers of one elementwise node (TFLite's scheme, with bpuq's single rounding):
///   add/sub: both operands move into a common fixed-point domain of scale 2 max(s_a, s_b) / 2^L,
///     a' = round(((q_a - zp_a) << L) * s_a / (2 max)),  b' likewise,
///     out = clamp(zp_out + round((a' +- b') * 2 max / (2^L s_out)))
///   mul: out = clamp(zp_out + round((q_a - zp_a)(q_b - zp_b) * s_a s_b / s_out))
/// L = 20 for int8 and 15 for int16 operands (left shifts keep ~20 bits of each operand's
/// rescaled value; int64 intermediates, so nothing overflows).
struct EltwiseParams {
    EltwiseOp op = EltwiseOp::add;
    std::int32_t zp_a = 0, zp_b = 0, zp_out = 0, lo = -128, hi = 127;
    int left_shift = 20;
    QuantizedMultiplier mult_a, mult_b, mult_out;

    static EltwiseParams make(EltwiseOp op, float s_a, std::int32_t zp_a, float s_b, std::int32_t zp_b, float s_out,
                              std::int32_t zp_out, std::int32_t lo, std::int32_t hi, int input_bits = 8) {
        BPUQ_CHECK(s_a > 0 && s_b > 0 && s_out > 0, "kernels.eltwise",
                   "eltwise scales must be positive, got " + std::to_string(s_a) + ", " + std::to_string(s_b) +
                       " -> " + std::to_string(s_out));
        EltwiseParams p;
        p.op = op;
        p.zp_a = zp_a;
        p.zp_b = zp_b;
        p.zp_out = zp_out;
        p.lo = lo;
        p.hi = hi;
        p.left_shift = input_bits == 16 ? 15 : 20;
        if (op == EltwiseOp::mul) {
            p.mult_out = quantize_multiplier(double(s_a) * double(s_b) / double(s_out));
        } else {
            const double twice_max = 2.0 * std::max(double(s_a), double(s_b));
            p.mult_a = quantize_multiplier(double(s_a) / twice_max);
            p.mult_b = quantize_multiplier(double(s_b) / twice_max);
            p.mult_out = quantize_multiplier(twice_max / (std::ldexp(1.0, p.left_shift) * double(s_out)));
        }
        return p;
    }

    template <class Round>
    std::int32_t apply(std::int32_t qa, std::int32_t qb) const noexcept {
        const std::int64_t a = std::int64_t(qa) - zp_a, b = std::int64_t(qb) - zp_b;
        if (op == EltwiseOp::mul) return requantize_value<Round>(a * b, mult_out, zp_out, lo, hi);
        const std::int64_t sa = multiply_by_quantized_multiplier<Round>(a * (std::int64_t(1) << left_shift), mult_a);
        const std::int64_t sb = multiply_by_quantized_multiplier<Round>(b * (std::int64_t(1) << left_shift), mult_b);
        return requantize_value<Round>(op == EltwiseOp::add ? sa + sb : sa - sb, mult_out, zp_out, lo, hi);
    }
};

namespace reference {

/// out[i] = a[i] (op) b[i] for n elements, or a[i] (op) b[i % b_count] when b is broadcast
/// along the innermost axis (b_count divides n: a per-channel NHWC operand or a scalar).
template <class Round = RoundHalfAwayFromZero, class TA, class TB, class TOut>
inline void eltwise(const TA* a, const TB* b, std::int64_t n, std::int64_t b_count, const EltwiseParams& p, TOut* out) {
    BPUQ_CHECK(b_count > 0 && n % b_count == 0, "kernels.eltwise",
               "operand b with " + std::to_string(b_count) + " elements cannot broadcast onto " + std::to_string(n));
    for (std::int64_t i = 0; i < n; ++i)
        out[i] = static_cast<TOut>(p.template apply<Round>(a[i], b[b_count == n ? i : i % b_count]));
}

}  // namespace reference
BPUQ_NAMESPACE_END
