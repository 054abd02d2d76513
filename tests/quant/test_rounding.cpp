// round_float under both tie rules, against std::round / std::nearbyint, independent of FE mode.
#include <doctest/doctest.h>

#include <bpuq/quant/rounding.hpp>

#include <cfenv>
#include <cmath>
#include <cstring>
#include <random>

#include "test_support.hpp"

using namespace bpuq;

TEST_CASE("ties") {
    CHECK(round_float<RoundHalfAwayFromZero>(2.5f) == 3.0f);
    CHECK(round_float<RoundHalfAwayFromZero>(-2.5f) == -3.0f);
    CHECK(round_float<RoundHalfToEven>(2.5f) == 2.0f);
    CHECK(round_float<RoundHalfToEven>(3.5f) == 4.0f);
    CHECK(round_float<RoundHalfToEven>(-2.5f) == -2.0f);
    CHECK(round_float<RoundHalfToEven>(-3.5f) == -4.0f);
    CHECK(round_float<RoundHalfAwayFromZero>(0.49999997f) == 0.0f);  // the classic +0.5 bug
    CHECK(round_float<RoundHalfToEven>(8388609.0f) == 8388609.0f);    // 2^23 + 1: already integral
    CHECK(round_float(0.5f, Rounding::half_to_even) == 0.0f);
    CHECK(round_float(0.5f, Rounding::half_away_from_zero) == 1.0f);
}

TEST_CASE("agrees with the C library on random floats of every magnitude") {
    auto& g = bpuq_test::rng();
    std::uniform_int_distribution<std::uint32_t> bits(0, 0xffffffffu);
    const int saved = std::fegetround();
    std::fesetround(FE_TONEAREST);
    for (int i = 0; i < 1000000; ++i) {
        std::uint32_t b = bits(g);
        float v;
        std::memcpy(&v, &b, 4);
        if (!std::isfinite(v)) continue;
        REQUIRE(round_float<RoundHalfAwayFromZero>(v) == std::round(v));
        REQUIRE(round_float<RoundHalfToEven>(v) == std::nearbyint(v));
    }
    // results do not depend on the FE rounding mode
    std::fesetround(FE_UPWARD);
    CHECK(round_float<RoundHalfToEven>(2.5f) == 2.0f);
    CHECK(round_float<RoundHalfAwayFromZero>(-2.5f) == -3.0f);
    std::fesetround(saved);
}
