// Threshold searches on histograms: percentile vs sorting, KL vs a naive O(bins^2) reference,
// MSE vs brute-force fake quantization and the known optimal clips of Gaussian/Laplace data.
#include <doctest/doctest.h>

#include <bpuq/observe/kl.hpp>
#include <bpuq/observe/mse.hpp>
#include <bpuq/observe/percentile.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "observe_test_data.hpp"

using namespace bpuq;

namespace {
Histogram hist_of(const std::vector<float>& v, std::size_t bins) {
    Histogram h(bins);
    h.add_abs(v.data(), v.size());
    return h;
}

// ALGORITHMS.md §2 written out literally: O(i) per candidate, groups by floor(j L / i).
std::vector<double> naive_kl(const std::vector<std::uint64_t>& H, int L, double eps) {
    const std::size_t B = H.size();
    std::vector<double> out;
    for (std::size_t i = std::size_t(L); i <= B; ++i) {
        std::vector<double> P(H.begin(), H.begin() + std::ptrdiff_t(i));
        for (std::size_t j = i; j < B; ++j) P[i - 1] += double(H[j]);
        std::vector<double> gsum(std::size_t(L), 0.0), gcnt(std::size_t(L), 0.0);
        for (std::size_t j = 0; j < i; ++j) {
            const std::size_t k = j * std::size_t(L) / i;
            gsum[k] += double(H[j]);
            gcnt[k] += H[j] ? 1.0 : 0.0;
        }
        std::vector<double> Q(i, 0.0);
        for (std::size_t j = 0; j < i; ++j) {
            const std::size_t k = j * std::size_t(L) / i;
            Q[j] = H[j] ? gsum[k] / gcnt[k] : 0.0;
        }
        double sp = 0, sq = 0;
        for (std::size_t j = 0; j < i; ++j) {
            sp += P[j];
            sq += Q[j];
        }
        if (sq == 0) {
            out.push_back(std::numeric_limits<double>::infinity());
            continue;
        }
        double kl = 0;
        for (std::size_t j = 0; j < i; ++j) {
            const double p = P[j] / sp, q = Q[j] / sq;
            if (p == 0) continue;
            kl += q > 0 ? p * std::log(p / q) : p * std::log(p / eps);
        }
        out.push_back(kl);
    }
    return out;
}

// Mean squared error of symmetric fake quantization with clip a (the true error on the data).
double true_mse(const std::vector<float>& v, double a, int bits = 8) {
    const double qmax = double((1 << (bits - 1)) - 1), s = a / qmax;
    double e = 0;
    for (float x : v) {
        const double q = std::min(std::max(std::round(double(x) / s), -qmax), qmax) * s;
        e += (q - x) * (q - x);
    }
    return e / double(v.size());
}
}  // namespace

TEST_CASE("percentile agrees with sorting the data (within one bin, never below)") {
    std::vector<float> v = observe_test::gaussian(200000, 2.0f);
    observe_test::add_outliers(v, 3, 100.0f);
    const Histogram h = hist_of(v, 2048);
    std::vector<float> a(v.size());
    std::transform(v.begin(), v.end(), a.begin(), [](float x) { return std::fabs(x); });
    std::sort(a.begin(), a.end());
    for (double p : {0.01, 0.5, 0.9, 0.999, 0.99995, 0.999999, 1.0}) {
        CAPTURE(p);
        const std::uint64_t k = detail::percentile_rank(p, h.total());
        CHECK(k == std::uint64_t(std::ceil(p * double(v.size()) - 1e-6)));
        const float exact = a[k - 1];
        const float t = percentile_threshold(h, p);
        CHECK(t >= exact);
        CHECK(double(t) < double(exact) + h.bin_width());
    }
    CHECK(percentile_threshold(h, 1.0) == 100.0f);
    CHECK(max_threshold(h) == 100.0f);
    CHECK_THROWS_WITH_AS(percentile_threshold(h, 0.0), doctest::Contains("[bpuq.observe.percentile]"), bpuq::Error);
    CHECK_THROWS_WITH_AS(percentile_threshold(h, 1.5), doctest::Contains("[bpuq.observe.percentile]"), bpuq::Error);
    CHECK(percentile_threshold(Histogram(64), 0.9) == 0.0f);
}

TEST_CASE("signed percentile range agrees with sorting the data") {
    std::vector<float> v = observe_test::gaussian(100000, 1.0f, 9);
    for (auto& x : v) x = x > 0 ? 3.0f * x : x;  // skewed: positive tail three times longer
    Histogram neg(4096), pos(4096);
    float lo = 0, hi = 0;
    for (float x : v) {
        lo = std::min(lo, x);
        hi = std::max(hi, x);
    }
    neg.reserve_range(-lo);
    pos.reserve_range(hi);
    add_signed_in_range(neg, pos, v.data(), v.size());
    CHECK(neg.total() + pos.total() == v.size());
    std::vector<float> s = v;
    std::sort(s.begin(), s.end());
    for (double p : {0.9, 0.999, 1.0}) {
        CAPTURE(p);
        float rmin, rmax;
        percentile_range(neg, pos, p, rmin, rmax);
        const std::uint64_t k = detail::percentile_rank(p, v.size());
        const float exact_hi = s[k - 1], exact_lo = s[v.size() - k];
        CHECK(rmax >= exact_hi);
        CHECK(double(rmax) < double(exact_hi) + pos.bin_width());
        CHECK(rmin <= exact_lo);
        CHECK(double(rmin) > double(exact_lo) - neg.bin_width());
    }
    float rmin, rmax;
    percentile_range(neg, pos, 1.0, rmin, rmax);
    CHECK(rmin == lo);
    CHECK(rmax == hi);
}

TEST_CASE("KL candidates with prefix sums equal the naive O(bins^2) definition") {
    std::vector<std::vector<float>> sets;
    sets.push_back(observe_test::gaussian(100000, 1.0f, 21));
    sets.push_back(observe_test::laplace(100000, 1.0f, 22));
    auto g = observe_test::gaussian(50000, 1.0f, 23);
    observe_test::add_outliers(g, 4, 30.0f);  // empty bins between the bulk and the outliers
    sets.push_back(g);
    sets.push_back(observe_test::uniform(20000, -1.0f, 1.0f, 24));
    for (std::size_t bins : {std::size_t(1024), std::size_t(2048)}) {
        for (const auto& v : sets) {
          for (double eps : {1e-10, 0.0}) {  // 0: Q = 0 < P is infinite (SciPy / NVIDIA)
            CAPTURE(eps);
            const Histogram h = hist_of(v, bins);
            const auto fast = detail::kl_divergences(h.counts().data(), h.bins(), 128, eps);
            const auto slow = naive_kl(h.counts(), 128, eps);
            REQUIRE(fast.size() == slow.size());
            std::size_t argmin_fast = 0, argmin_slow = 0;
            for (std::size_t t = 0; t < fast.size(); ++t) {
                if (std::isinf(slow[t])) {
                    CHECK(std::isinf(fast[t]));
                    continue;
                }
                REQUIRE(std::fabs(fast[t] - slow[t]) <= 1e-9 + 1e-7 * slow[t]);
                if (fast[t] <= fast[argmin_fast]) argmin_fast = t;
                if (slow[t] <= slow[argmin_slow]) argmin_slow = t;
            }
            CHECK(std::fabs(slow[argmin_fast] - slow[argmin_slow]) <= 1e-9 + 1e-7 * slow[argmin_slow]);
            const KlResult r = kl_search(h, 8, KlOptions{0, KlThresholdPlacement::bin_edge, eps});
            CHECK(r.search_bins == h.bins());
            CHECK(r.kept_bins == argmin_fast + 128);
            CHECK(r.threshold == std::min(float(double(r.kept_bins) * h.bin_width()), h.absmax()));
          }
        }
    }
}

TEST_CASE("KL options: NVIDIA's bin-0 replacement and presets") {
    std::vector<float> v = observe_test::gaussian(200000, 1.0f, 51);
    for (auto& x : v) x = std::max(x, 0.0f);  // ReLU: half of the values in bin 0
    observe_test::add_outliers(v, 6, 20.0f);
    const Histogram h = hist_of(v, 2048);
    std::vector<std::uint64_t> counts = h.counts();
    counts[0] = counts[1];
    const auto slow = naive_kl(counts, 128, 0.0);
    std::size_t best = 0;
    for (std::size_t t = 0; t < slow.size(); ++t)
        if (slow[t] <= slow[best]) best = t;
    const KlOptions nv = KlOptions::nvidia();
    const KlResult r = kl_search(h, 8, nv);
    CHECK(r.kept_bins == best + 128);
    CHECK(r.threshold == float(double(r.kept_bins) * h.bin_width()));  // bin edge
    // The replacement matters on ReLU data: the plain search sees a different P.
    KlOptions plain = nv;
    plain.zero_bin_as_next = false;
    CHECK(kl_search(h, 8, plain).kept_bins != r.kept_bins);
    const KlOptions hz = KlOptions::horizon();
    CHECK(hz.search_bins == 1024);
    CHECK(hz.placement == KlThresholdPlacement::bin_centre);
    CHECK_THROWS_WITH_AS(kl_search(h, 8, KlOptions{0, KlThresholdPlacement::bin_edge, -1.0}),
                         doctest::Contains("[bpuq.observe.kl]"), bpuq::Error);
}

TEST_CASE("KL thresholds on known distributions") {
    // Gaussian bulk with 0.002% outliers at 50 sigma: clipping at the max would leave the bulk
    // about 8 levels; any reasonable clip sits in the bulk's tail, between 2 and 10 sigma.
    std::vector<float> g = observe_test::gaussian(500000, 1.0f, 31);
    observe_test::add_outliers(g, 10, 50.0f);
    const Histogram hg = hist_of(g, 16384);
    for (std::size_t search : {std::size_t(0), std::size_t(1024), std::size_t(2048)}) {
        CAPTURE(search);
        const KlResult r = kl_search(hg, 8, KlOptions{search, KlThresholdPlacement::bin_centre, 1e-10});
        CHECK(r.threshold > 2.0f);
        CHECK(r.threshold < 10.0f);
        if (search) CHECK(r.search_bins <= search);
        CHECK(r.threshold == doctest::Approx((double(r.kept_bins) + 0.5) * r.search_width));
    }
    // Uniform |x| on [0, 1]: every clip folds a slab of mass into one bin; no clipping wins
    // up to a few bins.
    const Histogram hu = hist_of(observe_test::uniform(200000, -1.0f, 1.0f, 32), 2048);
    CHECK(kl_threshold(hu, 8, KlOptions{0}) > 0.97f);
    // 16-bit: 32768 levels resolve every bin of these grids, nothing is clipped.
    CHECK(kl_threshold(hg, 16) == hg.absmax());
    // Degenerate histograms.
    const Histogram zeros = hist_of(std::vector<float>(100, 0.0f), 1024);
    CHECK(kl_threshold(zeros) == 0.0f);
    const Histogram single = hist_of(std::vector<float>(100, 0.25f), 1024);
    CHECK(kl_threshold(single) == 0.25f);
    CHECK(kl_threshold(Histogram(1024)) == 0.0f);
    CHECK_THROWS_WITH_AS(kl_threshold(hu, 4), doctest::Contains("[bpuq.observe.bits]"), bpuq::Error);
}

TEST_CASE("MSE threshold: near the brute-force optimum and the known optimal clips") {
    // Optimal 8-bit clips in units of the scale (Banner et al., ACIQ): Gaussian 3.92 sigma,
    // Laplace 9.89 b. The curves are flat near the optimum, hence the tolerances.
    const std::vector<float> g = observe_test::gaussian(400000, 1.0f, 41);
    const std::vector<float> l = observe_test::laplace(400000, 1.0f, 42);
    const MseResult rg = mse_search(hist_of(g, 16384), 8);
    const MseResult rl = mse_search(hist_of(l, 16384), 8);
    CHECK(rg.threshold == doctest::Approx(3.92).epsilon(0.12));
    CHECK(rl.threshold == doctest::Approx(9.89).epsilon(0.15));
    for (const auto* data : {&g, &l}) {
        const MseResult r = data == &g ? rg : rl;
        double best = std::numeric_limits<double>::infinity();
        float absmax = 0;
        for (float x : *data) absmax = std::max(absmax, std::fabs(x));
        for (int k = 1; k <= 60; ++k) best = std::min(best, true_mse(*data, absmax * k / 60.0));
        CHECK(true_mse(*data, r.threshold) <= 1.05 * best);
        CHECK(r.mse == doctest::Approx(true_mse(*data, r.threshold)).epsilon(0.1));  // the model is honest
    }
    // Outliers far out dominate a squared error: MSE keeps them (unlike KL), by design.
    std::vector<float> go = g;
    observe_test::add_outliers(go, 8, 200.0f);
    CHECK(mse_threshold(hist_of(go, 16384)) > 100.0f);
    // Uniform data is not clipped (clipping costs more than the finer step saves).
    const Histogram hu = hist_of(observe_test::uniform(100000, -1.0f, 1.0f, 43), 2048);
    CHECK(mse_threshold(hu) > 0.98f);
    // Degenerate.
    CHECK(mse_threshold(hist_of(std::vector<float>(10, 0.0f), 1024)) == 0.0f);
    CHECK(mse_threshold(hist_of(std::vector<float>(10, -2.0f), 1024)) == 2.0f);
    CHECK(mse_threshold(hist_of(g, 16384), 16) == hist_of(g, 16384).absmax());
}
