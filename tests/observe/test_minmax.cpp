// MinMaxObserver: exact running range, moving average (ALGORITHMS.md §2), merging, errors.
#include <doctest/doctest.h>

#include <bpuq/observe/minmax.hpp>

#include <cmath>
#include <limits>
#include <vector>

#include "observe_test_data.hpp"

using namespace bpuq;

TEST_CASE("plain min/max is the exact range over all batches, in any order") {
    const std::vector<float> v = observe_test::laplace(10000, 2.0f);
    const float lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
    MinMaxObserver a, b;
    for (std::size_t i = 0; i < v.size(); i += 1000) a.observe(v.data() + i, 1000);
    for (std::size_t i = v.size(); i > 0; i -= 500) b.observe(v.data() + i - 500, 500);
    CHECK(a.min() == lo);
    CHECK(a.max() == hi);
    CHECK(b.min() == lo);
    CHECK(b.max() == hi);
    CHECK(a.threshold() == std::max(-lo, hi));
    CHECK(a.batches() == 10);
    const QParams p = a.qparams(8, true);
    CHECK(p.scale[0] == std::max(-lo, hi) / 127.0f);
    const QParams q = a.qparams(8, false);
    CHECK(q.scale[0] == (hi - lo) / 255.0f);
}

TEST_CASE("moving average follows min += c (min_b - min) from the first batch on") {
    MinMaxObserver ema(true, 0.01);
    double m = 0, M = 0;
    std::vector<float> batch(64);
    for (int b = 0; b < 50; ++b) {
        for (std::size_t i = 0; i < batch.size(); ++i) batch[i] = float(b % 7) - 3.0f + float(i) / 16.0f;
        const double bmin = *std::min_element(batch.begin(), batch.end());
        const double bmax = *std::max_element(batch.begin(), batch.end());
        if (b == 0) {
            m = bmin;
            M = bmax;
        } else {
            m += 0.01 * (bmin - m);
            M += 0.01 * (bmax - M);
        }
        ema.observe(batch.data(), batch.size());
    }
    CHECK(ema.min() == doctest::Approx(m).epsilon(1e-6));
    CHECK(ema.max() == doctest::Approx(M).epsilon(1e-6));
    CHECK(ema.min() != doctest::Approx(-3.0));  // not the plain minimum
}

TEST_CASE("merging min/max observers equals observing a's batches then b's") {
    const std::vector<float> v = observe_test::gaussian(64 * 40, 1.5f, 5);
    for (bool use_ema : {false, true}) {
        CAPTURE(use_ema);
        MinMaxObserver seq(use_ema, 0.05), a(use_ema, 0.05), b(use_ema, 0.05);
        for (int k = 0; k < 40; ++k) {
            seq.observe(v.data() + 64 * k, 64);
            (k < 17 ? a : b).observe(v.data() + 64 * k, 64);
        }
        MinMaxObserver merged = a;
        merged.merge(b);
        CHECK(merged.batches() == seq.batches());
        if (use_ema) {
            CHECK(merged.min() == doctest::Approx(seq.min()).epsilon(1e-6));
            CHECK(merged.max() == doctest::Approx(seq.max()).epsilon(1e-6));
        } else {
            CHECK(merged.min() == seq.min());
            CHECK(merged.max() == seq.max());
        }
        MinMaxObserver empty(use_ema, 0.05);
        MinMaxObserver m2 = empty;
        m2.merge(a);
        CHECK(m2.min() == a.min());
        a.merge(empty);
        CHECK(a.batches() == 17);
    }
    MinMaxObserver plain, ema(true);
    CHECK_THROWS_WITH_AS(plain.merge(ema), doctest::Contains("[bpuq.observe.merge]"), bpuq::Error);
}

TEST_CASE("min/max errors and degenerate data") {
    MinMaxObserver o;
    CHECK(o.empty());
    std::vector<float> v(5, 2.0f);
    v[1] = std::numeric_limits<float>::infinity();
    CHECK_THROWS_WITH_AS(o.observe(v.data(), v.size(), "relu3"),
                         doctest::Contains("[bpuq.observe.nonfinite] relu3: 1 of 5"), bpuq::Error);
    CHECK(o.empty());
    const std::vector<float> zeros(100, 0.0f);
    o.observe(zeros.data(), zeros.size());
    CHECK(o.min() == 0.0f);
    CHECK(o.max() == 0.0f);
    CHECK(o.qparams().scale[0] == 1.0f);  // core's degenerate-range rule
    const float neg_zero = -0.0f, tiny = -1e-40f;  // -0 and a denormal order correctly
    o.observe(&neg_zero, 1);
    o.observe(&tiny, 1);
    CHECK(o.min() == tiny);
    CHECK_THROWS_WITH_AS(MinMaxObserver(true, 0.0), doctest::Contains("[bpuq.observe.ema]"), bpuq::Error);
}
