// Fixed-point primitives: multiplier+shift, rounding shifts, saturation, requantization.
//
// Terminology (gemmlowp's): a real multiplier M > 0 is represented as an int32 m0 in
// [2^30, 2^31) and an integer `shift` with M ~= m0 * 2^(shift - 31). Requantizing an
// accumulator x then means computing round(x * m0 / 2^(31 - shift)) with ONE rounding
// (bpuq's normative form, docs/ARITHMETIC.md) or TFLite's two-step "double rounding".
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "config.hpp"
#include "error.hpp"
#include "policy.hpp"

BPUQ_NAMESPACE_BEGIN

static_assert((-1 >> 1) == -1 && (std::int64_t(-1) >> 1) == -1,
              "bpuq: needs arithmetic right shift of negative integers (all GCC/Clang/MSVC "
              "targets do this)");

/// m0 * 2^(shift - 31) ~= M. `multiplier` is 0 only for M == 0 or M < 2^-32.
struct QuantizedMultiplier {
    std::int32_t multiplier = 0;
    int shift = 0;
    /// Right shift applied after the 64-bit product in single rounding: 31 - shift, in [1, 62].
    constexpr int total_right_shift() const noexcept { return 31 - shift; }
};

/// Largest real multiplier bpuq accepts: 2^30 keeps the single-rounding shift >= 1.
constexpr double kMaxRealMultiplier = 1073741824.0;

/// QuantizeMultiplier (ALGORITHMS.md §6): q = frexp(M) in [0.5, 1), m0 = round(q * 2^31).
/// M must be finite and in [0, 2^30); the result reproduces M to 2^-31 relative error.
inline QuantizedMultiplier quantize_multiplier(double real_multiplier) {
    BPUQ_CHECK(std::isfinite(real_multiplier) && real_multiplier >= 0.0 &&
                   real_multiplier < kMaxRealMultiplier,
               "fixed_point.multiplier",
               "real multiplier " + std::to_string(real_multiplier) +
                   " is outside [0, 2^30); scales must be finite and positive");
    QuantizedMultiplier qm;
    if (real_multiplier == 0.0) return qm;
    int exponent = 0;
    const double q = std::frexp(real_multiplier, &exponent);
    std::int64_t m0 = static_cast<std::int64_t>(std::round(q * 2147483648.0));
    if (m0 == (std::int64_t(1) << 31)) {
        m0 /= 2;
        ++exponent;
    }
    if (exponent < -31) {  // below 2^-32: every int32 accumulator rounds to 0 anyway
        return qm;
    }
    qm.multiplier = static_cast<std::int32_t>(m0);
    qm.shift = exponent;
    return qm;
}

/// The real multiplier a QuantizedMultiplier stands for (for logs and tests).
inline double dequantize_multiplier(const QuantizedMultiplier& qm) noexcept {
    return std::ldexp(static_cast<double>(qm.multiplier), qm.shift - 31);
}

/// Clamp a wide integer into [lo, hi].
template <class T>
constexpr T clamp_value(T v, T lo, T hi) noexcept {
    return v < lo ? lo : (v > hi ? hi : v);
}

/// Saturating cast to a narrower integer type.
template <class To, class From>
constexpr To saturate_cast(From v) noexcept {
    using L = std::numeric_limits<To>;
    return v < static_cast<From>(L::min())   ? L::min()
           : v > static_cast<From>(L::max()) ? L::max()
                                             : static_cast<To>(v);
}

// ---- rounding right shifts ----------------------------------------------------------------

/// round(v / 2^t) for t in [0, 62] with the rounding policy's tie rule; exact for all v with
/// |v| <= 2^62 (the bias is added without overflow).
///   half away from zero: (v + 2^(t-1) - [v < 0]) >> t
///   half to even:        (v + 2^(t-1) - 1 + ((v >> t) & 1)) >> t
template <class RoundingPolicy = RoundHalfAwayFromZero>
constexpr std::int64_t rounding_shift_right(std::int64_t v, int t) noexcept {
    if (t == 0) return v;
    const std::int64_t half = std::int64_t(1) << (t - 1);
    if (std::is_same<RoundingPolicy, RoundHalfToEven>::value) {
        return (v + half - 1 + ((v >> t) & 1)) >> t;
    } else {
        return (v + half - (v < 0 ? 1 : 0)) >> t;
    }
}

namespace detail {

/// round(x * m / 2^t) for any int64 x, m in [0, 2^31), t in [1, 62], saturated to int64,
/// computed with a 128-bit intermediate built from 64-bit halves (no __int128 needed, so the
/// same code runs on 32-bit firmware targets).
template <class RoundingPolicy>
inline std::int64_t mul_round_shift_wide(std::int64_t x, std::int32_t m, int t) noexcept {
    const bool negative = x < 0;
    const std::uint64_t ux = negative ? (~static_cast<std::uint64_t>(x) + 1u) : static_cast<std::uint64_t>(x);
    const std::uint64_t um = static_cast<std::uint64_t>(m);
    const std::uint64_t a = ux >> 32, b = ux & 0xffffffffu;
    const std::uint64_t am = a * um, bm = b * um;  // each < 2^63
    // |p| = am * 2^32 + bm as (hi, lo)
    std::uint64_t lo = bm + (am << 32);
    std::uint64_t hi = (am >> 32) + (lo < bm ? 1u : 0u);
    if (negative) {  // two's complement negate of the 128-bit value
        lo = ~lo + 1u;
        hi = ~hi + (lo == 0 ? 1u : 0u);
    }
    // bias = 2^(t-1) - 1 + tie adjustment, always in [0, 2^62)
    std::uint64_t bias = (std::uint64_t(1) << (t - 1));
    if (std::is_same<RoundingPolicy, RoundHalfToEven>::value) {
        // ((p >> t) & 1) is bit t of p
        const std::uint64_t bit = t < 64 ? ((lo >> t) | (t > 0 ? (hi << (64 - t)) : 0)) & 1u : 0u;
        bias = bias - 1u + bit;
    } else {
        bias -= negative ? 1u : 0u;
    }
    const std::uint64_t lo2 = lo + bias;
    hi += (lo2 < lo) ? 1u : 0u;
    lo = lo2;
    // arithmetic shift right of (hi, lo) by t in [1, 62]
    const std::uint64_t res_lo = (lo >> t) | (hi << (64 - t));
    const std::int64_t res_hi = static_cast<std::int64_t>(hi) >> t;
    const std::int64_t res = static_cast<std::int64_t>(res_lo);
    // the result fits in int64 iff res_hi is the sign extension of res
    if (res_hi != (res < 0 ? -1 : 0)) {
        return res_hi < 0 ? std::numeric_limits<std::int64_t>::min()
                          : std::numeric_limits<std::int64_t>::max();
    }
    return res;
}

}  // namespace detail

/// bpuq's normative requantization of an int32 accumulator (single rounding):
///   round(x * m0 / 2^(31 - shift)), ties by the rounding policy. |result| < 2^62, not clamped.
template <class RoundingPolicy = RoundHalfAwayFromZero>
constexpr std::int64_t multiply_by_quantized_multiplier(std::int32_t x,
                                                        const QuantizedMultiplier& qm) noexcept {
    return rounding_shift_right<RoundingPolicy>(
        static_cast<std::int64_t>(x) * qm.multiplier, qm.total_right_shift());
}

/// The same for int64 accumulators (int16 activations); saturates to int64.
template <class RoundingPolicy = RoundHalfAwayFromZero>
inline std::int64_t multiply_by_quantized_multiplier(std::int64_t x,
                                                     const QuantizedMultiplier& qm) noexcept {
    if (x >= std::numeric_limits<std::int32_t>::min() && x <= std::numeric_limits<std::int32_t>::max())
        return multiply_by_quantized_multiplier<RoundingPolicy>(static_cast<std::int32_t>(x), qm);
    return detail::mul_round_shift_wide<RoundingPolicy>(x, qm.multiplier, qm.total_right_shift());
}

/// Full output stage of a conv/gemm/add: clamp(zp + requantize(acc), lo, hi).
template <class RoundingPolicy = RoundHalfAwayFromZero, class Acc>
inline std::int32_t requantize_value(Acc acc, const QuantizedMultiplier& qm, std::int32_t zero_point,
                                     std::int32_t lo, std::int32_t hi) noexcept {
    const std::int64_t scaled = multiply_by_quantized_multiplier<RoundingPolicy>(acc, qm);
    // clamp before adding the zero point so the sum cannot overflow
    const std::int64_t bounded = clamp_value<std::int64_t>(scaled, std::int64_t(lo) - zero_point,
                                                           std::int64_t(hi) - zero_point);
    return static_cast<std::int32_t>(bounded + zero_point);
}

// ---- gemmlowp / TFLite primitives (double rounding), for compatibility and tests ----------

/// SaturatingRoundingDoublingHighMul: round(a * b / 2^31) with ties toward +infinity (the
/// nudge-then-truncate of gemmlowp), the one overflowing case (INT32_MIN^2) saturated.
constexpr std::int32_t saturating_rounding_doubling_high_mul(std::int32_t a, std::int32_t b) noexcept {
    if (a == b && a == std::numeric_limits<std::int32_t>::min())
        return std::numeric_limits<std::int32_t>::max();
    const std::int64_t ab = static_cast<std::int64_t>(a) * b;
    const std::int64_t nudge = ab >= 0 ? (std::int64_t(1) << 30) : (1 - (std::int64_t(1) << 30));
    return static_cast<std::int32_t>((ab + nudge) / (std::int64_t(1) << 31));  // truncating
}

/// RoundingDivideByPOT: round(x / 2^e), ties away from zero, e in [0, 31].
constexpr std::int32_t rounding_divide_by_pot(std::int32_t x, int e) noexcept {
    const std::int32_t mask = static_cast<std::int32_t>((std::int64_t(1) << e) - 1);
    const std::int32_t remainder = x & mask;
    const std::int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (remainder > threshold ? 1 : 0);
}

/// TFLite's MultiplyByQuantizedMultiplier (double rounding). The left shift saturates instead
/// of overflowing.
constexpr std::int32_t multiply_by_quantized_multiplier_double_rounding(
    std::int32_t x, const QuantizedMultiplier& qm) noexcept {
    const int left_shift = qm.shift > 0 ? qm.shift : 0;
    const int right_shift = qm.shift > 0 ? 0 : -qm.shift;
    const std::int64_t shifted = static_cast<std::int64_t>(x) * (std::int64_t(1) << left_shift);
    const std::int32_t xs = saturate_cast<std::int32_t>(shifted);
    const std::int32_t high = saturating_rounding_doubling_high_mul(xs, qm.multiplier);
    return right_shift > 31 ? 0 : rounding_divide_by_pot(high, right_shift);
}

BPUQ_NAMESPACE_END
