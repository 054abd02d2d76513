// Fixed-point primitives against wide-integer (__int128 / long double) references, exhaustively
// where the domain allows and at the edges.
#include <doctest/doctest.h>

#include <bpuq/core/fixed_point.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

#include "test_support.hpp"

using namespace bpuq;
using i128 = __int128;

namespace {

constexpr std::int32_t kI32Min = std::numeric_limits<std::int32_t>::min();
constexpr std::int32_t kI32Max = std::numeric_limits<std::int32_t>::max();

enum Ties { away = 0, even = 1, up = 2 };

/// Exact round(p / 2^t) with the given tie rule, in 128-bit integers.
i128 ref_round_shift(i128 p, int t, int ties) {
    if (t == 0) return p;
    const i128 d = i128(1) << t;
    i128 q = p / d, r = p % d;  // truncating
    if (r < 0) {                // make it floor division
        q -= 1;
        r += d;
    }
    // now p = q*d + r with 0 <= r < d; compare 2r with d
    const i128 twice = 2 * r;
    if (twice > d) return q + 1;
    if (twice < d) return q;
    // tie
    if (ties == even) return (q % 2 == 0) ? q : q + 1;
    if (ties == up) return q + 1;
    return p < 0 ? q : q + 1;  // away from zero
}

std::int64_t sat64(i128 v) {
    if (v > std::numeric_limits<std::int64_t>::max()) return std::numeric_limits<std::int64_t>::max();
    if (v < std::numeric_limits<std::int64_t>::min()) return std::numeric_limits<std::int64_t>::min();
    return static_cast<std::int64_t>(v);
}

}  // namespace

TEST_CASE("quantize_multiplier reproduces M within 2^-31 relative error") {
    auto& g = bpuq_test::rng();
    std::uniform_real_distribution<double> log2m(-31.0, 29.9);
    for (int i = 0; i < 200000; ++i) {
        const double m = std::exp2(log2m(g));
        const QuantizedMultiplier qm = quantize_multiplier(m);
        REQUIRE(qm.multiplier >= (1 << 30));
        REQUIRE(qm.total_right_shift() >= 1);
        REQUIRE(qm.total_right_shift() <= 62);
        REQUIRE(std::fabs(dequantize_multiplier(qm) - m) <= m * std::exp2(-31.0));
    }
}

TEST_CASE("quantize_multiplier edges") {
    CHECK(quantize_multiplier(0.0).multiplier == 0);
    const auto one = quantize_multiplier(1.0);
    CHECK(one.multiplier == (1 << 30));
    CHECK(one.shift == 1);
    const auto half = quantize_multiplier(0.5);
    CHECK(half.multiplier == (1 << 30));
    CHECK(half.shift == 0);
    // q rounds up to exactly 1.0: m0 would be 2^31, so it is halved and the shift grows
    const auto almost = quantize_multiplier(1.0 - std::exp2(-34.0));
    CHECK(almost.multiplier == (1 << 30));
    CHECK(almost.shift == 1);
    // below 2^-32 nothing survives
    CHECK(quantize_multiplier(std::exp2(-40.0)).multiplier == 0);
    CHECK_THROWS_WITH_AS(quantize_multiplier(-1.0), doctest::Contains("fixed_point.multiplier"), bpuq::Error);
    CHECK_THROWS_AS(quantize_multiplier(std::nan("")), bpuq::Error);
    CHECK_THROWS_AS(quantize_multiplier(std::exp2(30.0)), bpuq::Error);
}

TEST_CASE_TEMPLATE("rounding_shift_right equals the exact rounded quotient", R, RoundHalfAwayFromZero, RoundHalfToEven) {
    const int ties = std::is_same<R, RoundHalfToEven>::value ? even : away;
    // exhaustive small domain: every v in [-4096, 4096] and every shift 0..13
    for (std::int64_t v = -4096; v <= 4096; ++v)
        for (int t = 0; t <= 13; ++t)
            REQUIRE(rounding_shift_right<R>(v, t) == static_cast<std::int64_t>(ref_round_shift(v, t, ties)));
    // random wide values and every shift up to 62
    auto& g = bpuq_test::rng();
    std::uniform_int_distribution<std::int64_t> dist(-(std::int64_t(1) << 62), std::int64_t(1) << 62);
    for (int i = 0; i < 100000; ++i) {
        const std::int64_t v = dist(g);
        const int t = static_cast<int>(i % 63);
        REQUIRE(rounding_shift_right<R>(v, t) == static_cast<std::int64_t>(ref_round_shift(v, t, ties)));
    }
    // exact ties at every shift
    for (int t = 1; t <= 30; ++t)
        for (std::int64_t k = -5; k <= 5; ++k) {
            const std::int64_t v = k * (std::int64_t(1) << t) + (std::int64_t(1) << (t - 1));
            REQUIRE(rounding_shift_right<R>(v, t) == static_cast<std::int64_t>(ref_round_shift(v, t, ties)));
        }
}

TEST_CASE_TEMPLATE("single-rounding requantization of int32 accumulators", R, RoundHalfAwayFromZero, RoundHalfToEven) {
    const int ties = std::is_same<R, RoundHalfToEven>::value ? even : away;
    auto& g = bpuq_test::rng();
    std::uniform_real_distribution<double> log2m(-31.0, 29.9);
    std::uniform_int_distribution<std::int32_t> acc(kI32Min, kI32Max);
    const std::int32_t edges[] = {kI32Min, kI32Min + 1, -1, 0, 1, kI32Max - 1, kI32Max};
    for (int i = 0; i < 2000; ++i) {
        const QuantizedMultiplier qm = quantize_multiplier(std::exp2(log2m(g)));
        // every int8 value (the exhaustive part), the int32 edges, and random accumulators
        for (int x = -128; x <= 127; ++x)
            REQUIRE(multiply_by_quantized_multiplier<R>(x, qm) ==
                    static_cast<std::int64_t>(ref_round_shift(i128(x) * qm.multiplier, qm.total_right_shift(), ties)));
        for (std::int32_t x : edges)
            REQUIRE(multiply_by_quantized_multiplier<R>(x, qm) ==
                    static_cast<std::int64_t>(ref_round_shift(i128(x) * qm.multiplier, qm.total_right_shift(), ties)));
        for (int k = 0; k < 50; ++k) {
            const std::int32_t x = acc(g);
            REQUIRE(multiply_by_quantized_multiplier<R>(x, qm) ==
                    static_cast<std::int64_t>(ref_round_shift(i128(x) * qm.multiplier, qm.total_right_shift(), ties)));
        }
    }
}

TEST_CASE("shift limits 1 and 62 of the single-rounding requantization") {
    QuantizedMultiplier qm{kI32Max, 30};  // total shift 1: M ~ 2^30
    CHECK(qm.total_right_shift() == 1);
    CHECK(multiply_by_quantized_multiplier(3, qm) == static_cast<std::int64_t>(ref_round_shift(i128(3) * kI32Max, 1, away)));
    qm = QuantizedMultiplier{1 << 30, -31};  // total shift 62: M = 2^-32
    CHECK(multiply_by_quantized_multiplier(kI32Max, qm) == 0);
    CHECK(multiply_by_quantized_multiplier(kI32Min, qm) == -1);  // -2^61 / 2^62 = -0.5 -> -1 away from zero
    CHECK(multiply_by_quantized_multiplier<RoundHalfToEven>(kI32Min, qm) == 0);
}

TEST_CASE_TEMPLATE("int64 accumulators use a 128-bit product without __int128", R, RoundHalfAwayFromZero, RoundHalfToEven) {
    const int ties = std::is_same<R, RoundHalfToEven>::value ? even : away;
    auto& g = bpuq_test::rng();
    std::uniform_int_distribution<std::int64_t> acc(std::numeric_limits<std::int64_t>::min(),
                                                    std::numeric_limits<std::int64_t>::max());
    std::uniform_int_distribution<int> bits(0, 63);
    std::uniform_real_distribution<double> log2m(-31.0, 29.9);
    const std::int64_t edges[] = {std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max(),
                                  -(std::int64_t(1) << 47), (std::int64_t(1) << 47) + 1, std::int64_t(kI32Max) + 1,
                                  std::int64_t(kI32Min) - 1};
    for (int i = 0; i < 20000; ++i) {
        const QuantizedMultiplier qm = quantize_multiplier(std::exp2(log2m(g)));
        std::int64_t x = acc(g) >> bits(g);  // spread magnitudes over all scales
        if (i < 6) x = edges[i];
        const std::int64_t expect =
            sat64(ref_round_shift(i128(x) * qm.multiplier, qm.total_right_shift(), ties));
        REQUIRE(multiply_by_quantized_multiplier<R>(x, qm) == expect);
        REQUIRE(detail::mul_round_shift_wide<R>(x, qm.multiplier, qm.total_right_shift()) == expect);
    }
}

TEST_CASE("requantize_value clamps before adding the zero point") {
    const QuantizedMultiplier qm = quantize_multiplier(0.25);
    CHECK(requantize_value(400, qm, 10, -128, 127) == 110);
    CHECK(requantize_value(4000, qm, 10, -128, 127) == 127);
    CHECK(requantize_value(-4000, qm, 10, -128, 127) == -128);
    CHECK(requantize_value(kI32Max, quantize_multiplier(1000.0), 127, -128, 127) == 127);
    CHECK(requantize_value(kI32Min, quantize_multiplier(1000.0), -128, -128, 127) == -128);
    CHECK(requantize_value(-3, qm, 0, 0, 127) == 0);  // ReLU folded into the bounds
}

TEST_CASE("saturating_rounding_doubling_high_mul: every int8 pair and random int32 pairs") {
    // gemmlowp's nudge + truncating division rounds ties toward +infinity (-2.5 -> -2).
    auto ref = [](std::int32_t a, std::int32_t b) -> std::int32_t {
        if (a == kI32Min && b == kI32Min) return kI32Max;
        return static_cast<std::int32_t>(ref_round_shift(i128(a) * b, 31, up));
    };
    for (int a = -128; a <= 127; ++a)
        for (int b = -128; b <= 127; ++b) {
            REQUIRE(saturating_rounding_doubling_high_mul(a * (1 << 24), b * (1 << 23)) == ref(a * (1 << 24), b * (1 << 23)));
            REQUIRE(saturating_rounding_doubling_high_mul(a, b * (1 << 23)) == ref(a, b * (1 << 23)));  // ties occur here
        }
    auto& g = bpuq_test::rng();
    std::uniform_int_distribution<std::int32_t> d(kI32Min, kI32Max);
    for (int i = 0; i < 200000; ++i) {
        const std::int32_t a = d(g), b = d(g);
        REQUIRE(saturating_rounding_doubling_high_mul(a, b) == ref(a, b));
    }
    CHECK(saturating_rounding_doubling_high_mul(kI32Min, kI32Min) == kI32Max);
    CHECK(saturating_rounding_doubling_high_mul(kI32Min, kI32Max) == -kI32Max);
    CHECK(saturating_rounding_doubling_high_mul(kI32Max, kI32Max) == kI32Max - 1);
}

TEST_CASE("rounding_divide_by_pot rounds half away from zero for every shift 0..31") {
    for (std::int32_t x = -70000; x <= 70000; ++x)
        for (int e = 0; e <= 31; e += (x % 7 == 0 ? 1 : 5))
            REQUIRE(rounding_divide_by_pot(x, e) == static_cast<std::int32_t>(ref_round_shift(x, e, away)));
    for (int e = 0; e <= 31; ++e) {
        REQUIRE(rounding_divide_by_pot(kI32Min, e) == static_cast<std::int32_t>(ref_round_shift(kI32Min, e, away)));
        REQUIRE(rounding_divide_by_pot(kI32Max, e) == static_cast<std::int32_t>(ref_round_shift(kI32Max, e, away)));
    }
}

TEST_CASE("TFLite double rounding: known values and at most one step from single rounding") {
    // Hand-derived from TFLite's MultiplyByQuantizedMultiplier definition.
    CHECK(multiply_by_quantized_multiplier_double_rounding(100, quantize_multiplier(0.5)) == 50);
    // -2.5: TFLite's high multiply rounds the tie toward +inf, bpuq's single rounding away from 0
    CHECK(multiply_by_quantized_multiplier_double_rounding(-5, quantize_multiplier(0.5)) == -2);
    CHECK(multiply_by_quantized_multiplier(-5, quantize_multiplier(0.5)) == -3);
    CHECK(multiply_by_quantized_multiplier_double_rounding(5, quantize_multiplier(0.5)) == 3);
    CHECK(multiply_by_quantized_multiplier_double_rounding(1000, quantize_multiplier(1.5)) == 1500);
    CHECK(multiply_by_quantized_multiplier_double_rounding(7, quantize_multiplier(0.25)) == 2);
    // 2^30 * 2^-2 with m0 = 2^30, shift = -1: 536870912 exactly
    CHECK(multiply_by_quantized_multiplier_double_rounding(1 << 30, quantize_multiplier(0.25)) == 1 << 28);
    // double rounding differs from single rounding here: x*M = 0.5 + 2^-20 first rounds the high
    // product, then the power-of-two division rounds again.
    auto& g = bpuq_test::rng();
    std::uniform_real_distribution<double> log2m(-20.0, 0.0);
    std::uniform_int_distribution<std::int32_t> d(-(1 << 24), 1 << 24);
    int differ = 0;
    for (int i = 0; i < 100000; ++i) {
        const QuantizedMultiplier qm = quantize_multiplier(std::exp2(log2m(g)));
        const std::int32_t x = d(g);
        const std::int64_t s = multiply_by_quantized_multiplier(x, qm);
        const std::int64_t dr = multiply_by_quantized_multiplier_double_rounding(x, qm);
        REQUIRE(std::llabs(s - dr) <= 1);
        differ += s != dr;
    }
    MESSAGE("single vs double rounding differ on " << differ << " of 100000 random cases");
}
