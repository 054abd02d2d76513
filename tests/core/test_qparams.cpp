// QParams from ranges (ALGORITHMS.md §1), including degenerate ranges and per-channel ranges.
#include <doctest/doctest.h>

#include <bpuq/core/qparams.hpp>

#include <cfloat>
#include <cmath>
#include <limits>

using namespace bpuq;

TEST_CASE("symmetric int8 and int16 scales divide by qmax") {
    auto p = qparams_from_range(-2.0f, 1.0f, 8, true);
    CHECK(p.scale[0] == doctest::Approx(2.0f / 127.0f));
    CHECK(p.zero_point[0] == 0);
    CHECK(p.qmin() == -128);
    CHECK(p.qmax() == 127);
    auto p16 = qparams_from_range(-1.0f, 3.0f, 16, true);
    CHECK(p16.scale[0] == 3.0f / 32767.0f);
    CHECK(p16.qmin() == -32768);
    auto w = qparams_from_threshold(1.27f, 8, /*narrow=*/true);
    CHECK(w.qmin() == -127);
    CHECK(w.scale[0] == 1.27f / 127.0f);
}

TEST_CASE("asymmetric ranges include zero and put zero exactly on the grid") {
    auto p = qparams_from_range(0.5f, 6.0f, 8, false);  // widened to [0, 6]
    CHECK(p.scale[0] == 6.0f / 255.0f);
    CHECK(p.zero_point[0] == -128);
    auto q = qparams_from_range(-1.0f, 3.0f, 8, false);
    CHECK(q.scale[0] == 4.0f / 255.0f);
    CHECK(q.zero_point[0] == static_cast<int>(std::round(-128.0f + 1.0f / (4.0f / 255.0f))));
    auto r = qparams_from_range(-5.0f, -1.0f, 8, false);  // widened to [-5, 0]
    CHECK(r.zero_point[0] == 127);
}

TEST_CASE("degenerate ranges never give a zero, denormal or NaN scale") {
    for (bool sym : {true, false}) {
        auto z = qparams_from_range(0.0f, 0.0f, 8, sym);
        CHECK(z.scale[0] == 1.0f);
        CHECK(z.zero_point[0] == 0);
        auto tiny = qparams_from_range(0.0f, FLT_MIN, 8, sym);  // FLT_MIN / 127 is denormal
        CHECK(tiny.scale[0] == 1.0f);
        auto single = qparams_from_range(3.0f, 3.0f, 8, sym);  // one value -> [0, 3]
        CHECK(std::isfinite(single.scale[0]));
        CHECK(single.scale[0] > 0.0f);
    }
}

TEST_CASE("non-finite or inverted ranges are errors naming the problem") {
    CHECK_THROWS_WITH_AS(qparams_from_range(0.0f, std::numeric_limits<float>::infinity()),
                         doctest::Contains("not finite"), bpuq::Error);
    CHECK_THROWS_WITH_AS(qparams_from_range(std::nanf(""), 1.0f), doctest::Contains("qparams.range"), bpuq::Error);
    CHECK_THROWS_WITH_AS(qparams_from_range(2.0f, 1.0f), doctest::Contains("exceeds"), bpuq::Error);
    CHECK_THROWS_WITH_AS(qparams_from_range(0.0f, 1.0f, 12), doctest::Contains("8 and 16"), bpuq::Error);
    CHECK_THROWS_AS(qparams_from_threshold(-1.0f), bpuq::Error);
}

TEST_CASE("per-channel parameters equal per-tensor parameters of each channel") {
    std::vector<float> lo{-1.0f, 0.0f, -3.0f, 0.0f}, hi{1.0f, 2.0f, 0.5f, 0.0f};
    for (bool sym : {true, false}) {
        auto p = qparams_from_ranges(lo, hi, 1, 8, sym);
        REQUIRE(p.channels() == 4);
        CHECK(p.axis == 1);
        for (std::size_t c = 0; c < 4; ++c) {
            auto t = qparams_from_range(lo[c], hi[c], 8, sym);
            CHECK(p.scale[c] == t.scale[0]);
            CHECK(p.zero_point[c] == t.zero_point[0]);
        }
    }
    CHECK_THROWS_AS(qparams_from_ranges({0.0f}, {1.0f, 2.0f}, 0), bpuq::Error);
    CHECK_THROWS_AS(qparams_from_ranges({}, {}, 0), bpuq::Error);
}
