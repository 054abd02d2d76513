// Observer (runtime method, per tensor / per channel): per-channel equals per-tensor on each
// channel, merge equals sequential observation, asymmetric ranges, qparams, errors.
#include <doctest/doctest.h>

#include <bpuq/observe.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "observe_test_data.hpp"

using namespace bpuq;

namespace {
constexpr CalibMethod kMethods[] = {CalibMethod::max, CalibMethod::percentile, CalibMethod::kl, CalibMethod::mse};

ObserverConfig config(CalibMethod m, int axis = -1, bool symmetric = true) {
    ObserverConfig c;
    c.method = m;
    c.channel_axis = axis;
    c.symmetric = symmetric;
    c.percentile = 0.999;
    c.histogram_bins = 2048;
    c.channel_histogram_bins = 2048;  // per channel and per tensor on the same grids
    return c;
}

// An NCHW batch whose channels have different distributions and scales.
std::vector<float> nchw_batch(std::int64_t n, std::int64_t c, std::int64_t hw, std::uint64_t seed) {
    std::vector<float> v(std::size_t(n * c * hw));
    for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t k = 0; k < c; ++k) {
            auto part = k % 3 == 0   ? observe_test::gaussian(std::size_t(hw), 0.5f + float(k), seed + std::uint64_t(k))
                        : k % 3 == 1 ? observe_test::laplace(std::size_t(hw), 0.1f * float(k + 1), seed + std::uint64_t(k))
                                     : observe_test::uniform(std::size_t(hw), -0.2f, 4.0f, seed + std::uint64_t(k));
            if (k == 1) std::fill(part.begin(), part.end(), 0.0f);  // an all-zero (dead) channel
            std::copy(part.begin(), part.end(), v.begin() + (i * c + k) * hw);
        }
    return v;
}

std::vector<float> channel_of(const std::vector<float>& v, std::int64_t n, std::int64_t c, std::int64_t hw, std::int64_t k) {
    std::vector<float> out;
    for (std::int64_t i = 0; i < n; ++i)
        out.insert(out.end(), v.begin() + (i * c + k) * hw, v.begin() + (i * c + k + 1) * hw);
    return out;
}
}  // namespace

TEST_CASE("per-channel observation equals per-tensor observation of each channel") {
    const std::int64_t N = 2, C = 5, H = 12, W = 10;
    const auto b1 = nchw_batch(N, C, H * W, 100), b2 = nchw_batch(N, C, H * W, 200);
    for (CalibMethod m : kMethods) {
        for (bool sym : {true, false}) {
            if (!sym && (m == CalibMethod::kl || m == CalibMethod::mse)) continue;
            CAPTURE(calib_method_name(m));
            CAPTURE(sym);
            Observer pc(config(m, 1, sym));
            pc.observe(b1.data(), Shape{N, C, H, W});
            pc.observe(Tensor::from_vector(Shape{N, C, H, W}, b2));
            REQUIRE(pc.channels() == std::size_t(C));
            const QParams q = pc.qparams();
            CHECK(q.axis == 1);
            CHECK(q.channels() == std::size_t(C));
            for (std::int64_t k = 0; k < C; ++k) {
                Observer pt(config(m, -1, sym));
                const auto c1 = channel_of(b1, N, C, H * W, k), c2 = channel_of(b2, N, C, H * W, k);
                pt.observe(c1.data(), c1.size());
                pt.observe(c2.data(), c2.size());
                float lo1, hi1, lo2, hi2;
                pc.range(std::size_t(k), lo1, hi1);
                pt.range(0, lo2, hi2);
                CHECK(lo1 == lo2);
                CHECK(hi1 == hi2);
                if (m != CalibMethod::max) CHECK(pc.histogram(std::size_t(k)) == pt.histogram());
                if (m == CalibMethod::percentile && !sym)
                    CHECK(pc.negative_histogram(std::size_t(k)) == pt.negative_histogram());
                const QParams qt = pt.qparams();
                CHECK(q.scale[std::size_t(k)] == qt.scale[0]);
                CHECK(q.zero_point[std::size_t(k)] == qt.zero_point[0]);
            }
            CHECK(q.scale[1] == 1.0f);  // the dead channel gets the degenerate-range scale
        }
    }
}

TEST_CASE("observer merge equals observing both streams in sequence") {
    const std::int64_t N = 1, C = 4, HW = 300;
    std::vector<std::vector<float>> batches;
    for (std::uint64_t s = 0; s < 6; ++s) batches.push_back(nchw_batch(N, C, HW, 1000 + 17 * s));
    for (auto& x : batches[4]) x *= 9.0f;  // a later batch with a much larger range
    for (CalibMethod m : kMethods)
        for (int axis : {-1, 1}) {
            CAPTURE(calib_method_name(m));
            CAPTURE(axis);
            Observer seq(config(m, axis)), a(config(m, axis)), b(config(m, axis));
            for (std::size_t k = 0; k < batches.size(); ++k) {
                seq.observe(batches[k].data(), Shape{N, C, HW});
                (k < 2 ? a : b).observe(batches[k].data(), Shape{N, C, HW});
            }
            Observer merged = a;
            merged.merge(b);
            CHECK(merged.thresholds() == seq.thresholds());
            if (m != CalibMethod::max)
                for (std::size_t c = 0; c < seq.channels(); ++c) CHECK(merged.histogram(c) == seq.histogram(c));
            Observer fresh(config(m, axis));  // an empty observer merges as the identity
            fresh.merge(seq);
            CHECK(fresh.thresholds() == seq.thresholds());
        }
    // Asymmetric: min/max and the signed percentile histograms merge exactly as well.
    for (CalibMethod m : {CalibMethod::max, CalibMethod::percentile}) {
        Observer seq(config(m, 1, false)), a(config(m, 1, false)), b(config(m, 1, false));
        for (std::size_t k = 0; k < batches.size(); ++k) {
            seq.observe(batches[k].data(), Shape{N, C, HW});
            (k % 2 ? a : b).observe(batches[k].data(), Shape{N, C, HW});
        }
        b.merge(a);  // a different split and order than the sequence
        if (m == CalibMethod::percentile)
            for (std::size_t c = 0; c < seq.channels(); ++c) {
                CHECK(b.histogram(c) == seq.histogram(c));
                CHECK(b.negative_histogram(c) == seq.negative_histogram(c));
            }
        const QParams qb = b.qparams(), qs = seq.qparams();
        CHECK(qb.scale == qs.scale);
        CHECK(qb.zero_point == qs.zero_point);
    }
}

TEST_CASE("asymmetric max and percentile ranges; symmetric ranges are [-T, T]") {
    std::vector<float> v = observe_test::uniform(50000, -0.5f, 6.0f, 77);  // ReLU6-like, with negatives
    Observer mm(config(CalibMethod::max, -1, false));
    mm.observe(v.data(), v.size());
    float lo, hi;
    mm.range(0, lo, hi);
    CHECK(lo == *std::min_element(v.begin(), v.end()));
    CHECK(hi == *std::max_element(v.begin(), v.end()));
    const QParams q = mm.qparams();
    CHECK_FALSE(q.symmetric);
    CHECK(q.zero_point[0] != 0);

    ObserverConfig pc = config(CalibMethod::percentile, -1, false);
    pc.percentile = 0.99;
    Observer pr(pc);
    pr.observe(v.data(), v.size());
    pr.range(0, lo, hi);
    std::vector<float> s = v;
    std::sort(s.begin(), s.end());
    const std::size_t k = std::size_t(std::ceil(0.99 * double(v.size())));
    CHECK(hi >= s[k - 1]);
    CHECK(double(hi) < double(s[k - 1]) + pr.histogram().bin_width());
    CHECK(lo <= s[v.size() - k]);
    CHECK(double(lo) > double(s[v.size() - k]) - pr.negative_histogram().bin_width());

    Observer sym(config(CalibMethod::kl));
    sym.observe(v.data(), v.size());
    sym.range(0, lo, hi);
    CHECK(lo == -hi);
    CHECK(hi == sym.threshold());
    CHECK(sym.qparams().scale[0] == hi / 127.0f);
}

TEST_CASE("per-channel histograms use their own, smaller bin limit") {
    ObserverConfig c;
    c.method = CalibMethod::kl;
    c.channel_axis = 0;
    Observer pc(c);
    const std::vector<float> v = observe_test::gaussian(4 * 1000, 1.0f, 3);
    pc.observe(v.data(), Shape{4, 1000});
    CHECK(pc.histogram(3).max_bins() == 2048);
    c.channel_axis = -1;
    Observer pt(c);
    pt.observe(v.data(), v.size());
    CHECK(pt.histogram().max_bins() == 16384);
    c.channel_histogram_bins = 1;
    CHECK_THROWS_WITH_AS(Observer{c}, doctest::Contains("[bpuq.observe.bins]"), bpuq::Error);
}

TEST_CASE("EMA observer and method names") {
    ObserverConfig c = config(CalibMethod::max);
    c.ema = true;
    Observer o(c);
    const float b1[] = {-1.0f, 1.0f}, b2[] = {-3.0f, 3.0f};
    o.observe(b1, 2);
    o.observe(b2, 2);
    CHECK(o.threshold() == doctest::Approx(1.0 + 0.01 * 2.0));
    for (CalibMethod m : kMethods) CHECK(parse_calib_method(calib_method_name(m)) == m);
    CHECK_THROWS_WITH_AS(parse_calib_method("entropy"), doctest::Contains("[bpuq.observe.method]"), bpuq::Error);
}

TEST_CASE("observer errors name the observer and what is allowed") {
    ObserverConfig c = config(CalibMethod::kl, -1, false);
    c.name = "conv3_out";
    CHECK_THROWS_WITH_AS(Observer{c}, doctest::Contains("[bpuq.observe.config] conv3_out: method kl"), bpuq::Error);
    c = config(CalibMethod::percentile);
    c.bits = 16;
    c.symmetric = false;
    CHECK_THROWS_WITH_AS(Observer{c}, doctest::Contains("[bpuq.observe.config]"), bpuq::Error);
    c = config(CalibMethod::kl);
    c.ema = true;
    CHECK_THROWS_WITH_AS(Observer{c}, doctest::Contains("[bpuq.observe.config]"), bpuq::Error);
    c = config(CalibMethod::max);
    c.percentile = 0.0;
    CHECK_THROWS_WITH_AS(Observer{c}, doctest::Contains("[bpuq.observe.percentile]"), bpuq::Error);

    Observer pc(config(CalibMethod::mse, 1));
    CHECK_THROWS_WITH_AS(pc.qparams(), doctest::Contains("[bpuq.observe.empty]"), bpuq::Error);
    std::vector<float> v(2 * 3 * 4, 1.0f);
    pc.observe(v.data(), Shape{2, 3, 4});
    CHECK_THROWS_WITH_AS(pc.observe(v.data(), Shape{3, 2, 4}), doctest::Contains("[bpuq.observe.channels]"), bpuq::Error);
    CHECK_THROWS_WITH_AS(pc.observe(v.data(), Shape{24}), doctest::Contains("[bpuq.observe.axis]"), bpuq::Error);
    CHECK_THROWS_WITH_AS(pc.observe(v.data(), v.size()), doctest::Contains("[bpuq.observe.axis]"), bpuq::Error);
    v[13] = std::numeric_limits<float>::quiet_NaN();  // channel 0 of sample 1 (index 13 = 1*12 + 0*4 + 1)
    CHECK_THROWS_WITH_AS(pc.observe(v.data(), Shape{2, 3, 4}),
                         doctest::Contains("[bpuq.observe.nonfinite] observer (channel 0): 1 of 24"), bpuq::Error);
    CHECK_THROWS_WITH_AS(pc.observe(Tensor(DType::int8, Shape{2, 3, 4})), doctest::Contains("[bpuq.observe.dtype]"),
                         bpuq::Error);
    Observer other(config(CalibMethod::kl, 1));
    CHECK_THROWS_WITH_AS(pc.merge(other), doctest::Contains("[bpuq.observe.merge]"), bpuq::Error);
}
