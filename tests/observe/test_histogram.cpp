// Histogram: canonical power-of-two grid, exact growth, bitwise merge, bounded memory, errors.
#include <doctest/doctest.h>

#include <bpuq/observe/histogram.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "observe_test_data.hpp"

using namespace bpuq;

namespace {
// Independent reference: bin every value directly on the histogram's final grid.
std::vector<std::uint64_t> direct_binning(const std::vector<float>& v, const Histogram& h) {
    std::vector<std::uint64_t> c(h.bins(), 0);
    const double w = h.bin_width();
    for (float x : v) {
        const auto j = static_cast<std::size_t>(std::floor(std::fabs(static_cast<double>(x)) / w));
        REQUIRE(j < c.size());
        ++c[j];
    }
    return c;
}

void add(Histogram& h, const std::vector<float>& v, std::size_t begin, std::size_t end) {
    h.add_abs(v.data() + begin, end - begin);
}
}  // namespace

TEST_CASE("histogram grid: width is a power of two and the range needs at most max_bins bins") {
    for (std::size_t max_bins : {std::size_t(2), std::size_t(1024), std::size_t(2048), std::size_t(16384), std::size_t(3000)}) {
        for (float m : {1e-30f, 1e-3f, 0.37f, 1.0f, 2.0f, 3.0f, 127.0f, 1000.5f, 3.0e8f, 3.0e38f}) {
            const int e = Histogram::exponent_for(m, max_bins);
            const std::size_t bins = Histogram::bins_for(m, e);
            CAPTURE(max_bins);
            CAPTURE(m);
            CHECK(bins <= max_bins);
            CHECK(std::floor(std::ldexp(double(m), -e)) == double(bins - 1));
            // one step finer would not fit: the grid uses more than half of the bins
            if (e > Histogram::kMinExponent) CHECK(std::floor(std::ldexp(double(m), -(e - 1))) >= double(max_bins));
        }
    }
    CHECK(Histogram::exponent_for(0.0f, 1024) == Histogram::kMinExponent);
    CHECK(Histogram::bins_for(0.0f, Histogram::kMinExponent) == 1);
}

TEST_CASE("histogram counts equal direct binning of all values on the final grid, whatever the batches") {
    std::vector<float> v = observe_test::gaussian(60000, 0.5f);
    observe_test::add_outliers(v, 5, 40.0f);
    // Batches with growing ranges force both kinds of growth: more bins, then coarser bins.
    std::sort(v.begin(), v.end(), [](float a, float b) { return std::fabs(a) < std::fabs(b); });
    Histogram h(1024);
    for (std::size_t b = 0; b < v.size(); b += 997) add(h, v, b, std::min(v.size(), b + 997));
    CHECK(h.total() == v.size());
    CHECK(h.absmax() == 40.0f);
    CHECK(h.counts() == direct_binning(v, h));
    std::uint64_t sum = 0;
    for (auto c : h.counts()) sum += c;
    CHECK(sum == v.size());  // growth preserves the total count

    // Same data in one batch, and in shuffled batches: bitwise the same histogram.
    Histogram one(1024);
    add(one, v, 0, v.size());
    CHECK(one == h);
    std::mt19937_64 g(7);
    std::shuffle(v.begin(), v.end(), g);
    Histogram shuffled(1024);
    for (std::size_t b = 0; b < v.size(); b += 4096) add(shuffled, v, b, std::min(v.size(), b + 4096));
    CHECK(shuffled == h);
}

TEST_CASE("merge(a, b) is bitwise equal to observing a then b") {
    const std::vector<float> small = observe_test::gaussian(20000, 0.01f, 11);
    const std::vector<float> large = observe_test::laplace(30000, 3.0f, 12);
    for (int order = 0; order < 2; ++order) {
        const std::vector<float>& a = order ? large : small;
        const std::vector<float>& b = order ? small : large;
        Histogram ha(2048), hb(2048), seq(2048);
        add(ha, a, 0, a.size());
        add(hb, b, 0, b.size());
        add(seq, a, 0, a.size());
        add(seq, b, 0, b.size());
        Histogram merged = ha;
        merged.merge(hb);
        CHECK(merged == seq);
        Histogram reversed = hb;  // and the merge is symmetric
        reversed.merge(ha);
        CHECK(reversed == seq);
    }
    // Empty operands are identities.
    Histogram ha(2048), empty(2048);
    add(ha, small, 0, small.size());
    Histogram m1 = ha;
    m1.merge(empty);
    CHECK(m1 == ha);
    Histogram m2 = empty;
    m2.merge(ha);
    CHECK(m2 == ha);
    Histogram other_limit(1024);
    CHECK_THROWS_WITH_AS(m2.merge(other_limit), doctest::Contains("[bpuq.observe.merge]"), bpuq::Error);
}

TEST_CASE("histogram memory stays bounded by max_bins over many growing batches") {
    Histogram h(16384);
    std::vector<float> batch(256);
    std::uint64_t n = 0;
    float scale = 1e-6f;
    for (int b = 0; b < 2000; ++b) {
        for (std::size_t i = 0; i < batch.size(); ++i) batch[i] = scale * static_cast<float>(i + 1) / 256.0f;
        h.add_abs(batch.data(), batch.size());
        n += batch.size();
        scale *= 1.01f;  // the range grows by 1% per batch: 2000 growth steps
        REQUIRE(h.bins() <= h.max_bins());
        REQUIRE(h.memory_bytes() <= (h.max_bins() + Histogram::kSpareSlots) * sizeof(std::uint64_t));
    }
    CHECK(h.total() == n);
    std::uint64_t sum = 0;
    for (auto c : h.counts()) sum += c;
    CHECK(sum == n);
    CHECK(h.bins() > h.max_bins() / 2);
}

TEST_CASE("degenerate histograms: all zeros, a single value, an empty batch") {
    Histogram z(1024);
    const std::vector<float> zeros(1000, 0.0f);
    z.add_abs(zeros.data(), zeros.size());
    z.add_abs(zeros.data(), 0);
    CHECK(z.bins() == 1);
    CHECK(z.count(0) == 1000);
    CHECK(z.absmax() == 0.0f);

    Histogram s(1024);
    const std::vector<float> threes(500, -3.0f);
    s.add_abs(threes.data(), threes.size());
    CHECK(s.absmax() == 3.0f);
    CHECK(s.count(s.bins() - 1) == 500);
    CHECK(s.bin_lower(s.bins() - 1) <= 3.0);
    CHECK(s.bin_upper(s.bins() - 1) > 3.0);
    // zeros observed before the first non-zero value stay in bin 0
    z.add_abs(threes.data(), threes.size());
    CHECK(z.count(0) == 1000);
    CHECK(z.total() == 1500);
    CHECK(z.count(z.bins() - 1) == 500);
}

TEST_CASE("histogram errors: non-finite data and bad bin counts") {
    Histogram h(1024);
    std::vector<float> v(10, 1.0f);
    v[3] = std::numeric_limits<float>::quiet_NaN();
    v[7] = -std::numeric_limits<float>::infinity();
    CHECK_THROWS_WITH_AS(h.add_abs(v.data(), v.size(), "conv1_out"),
                         doctest::Contains("[bpuq.observe.nonfinite] conv1_out: 2 of 10"), bpuq::Error);
    CHECK(h.empty());  // a rejected batch leaves the histogram untouched
    CHECK_THROWS_WITH_AS(Histogram(1), doctest::Contains("[bpuq.observe.bins]"), bpuq::Error);
    CHECK_THROWS_WITH_AS(Histogram(std::size_t(1) << 25), doctest::Contains("[bpuq.observe.bins]"), bpuq::Error);
}

TEST_CASE("extreme magnitudes: denormals, values near FLT_MAX, merges across 240 octaves") {
    const float big = 3.0e38f, tiny = 1e-42f;  // tiny is a denormal
    std::vector<float> small_vals{tiny, -2 * tiny, 0.0f, 5e-40f, 1e-38f};
    std::vector<float> big_vals{big, -1.0f, 1e30f, 0.5f * big};
    for (std::size_t bins : {std::size_t(2), std::size_t(1024), std::size_t(16384)}) {
        CAPTURE(bins);
        Histogram hs(bins), hb(bins), seq(bins);
        hs.add_abs(small_vals.data(), small_vals.size());
        hb.add_abs(big_vals.data(), big_vals.size());
        CHECK(hs.width_exponent() == Histogram::kMinExponent);  // below 2^-126 the width stops shrinking
        CHECK(hs.counts() == direct_binning(small_vals, hs));
        CHECK(hb.counts() == direct_binning(big_vals, hb));
        seq.add_abs(small_vals.data(), small_vals.size());
        seq.add_abs(big_vals.data(), big_vals.size());  // regrid by > 64 doublings
        Histogram merged = hs;
        merged.merge(hb);
        CHECK(merged == seq);
        Histogram reversed = hb;
        reversed.merge(hs);
        CHECK(reversed == seq);
        CHECK(seq.count(0) >= small_vals.size());  // everything small collapsed into bin 0
        CHECK(seq.absmax() == big);
        CHECK(seq.total() == small_vals.size() + big_vals.size());
        std::vector<float> all = small_vals;
        all.insert(all.end(), big_vals.begin(), big_vals.end());
        CHECK(seq.counts() == direct_binning(all, seq));
    }
}
