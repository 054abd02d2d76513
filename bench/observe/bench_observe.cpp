// Observer benchmarks: KL threshold search (prefix sums vs the naive definition) and observing
// a 1x64x112x112 activation per tensor / per channel with min/max and histogram observers.
#include <benchmark/benchmark.h>

#include <bpuq/observe.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

namespace {

using namespace bpuq;

std::vector<float> gaussian(std::size_t n, std::uint64_t seed) {
    std::mt19937_64 g(seed);
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

// A histogram with exactly `bins` bins: Gaussian data with a few outliers, scaled so that the
// largest value sits in the last bin of a unit-width grid.
Histogram histogram_with_bins(std::size_t bins) {
    std::vector<float> v = gaussian(1 << 20, 5);
    for (std::size_t k = 0; k < 20; ++k) v[k * 4099] = 12.0f;
    const float scale = (static_cast<float>(bins) - 0.5f) / 12.0f;
    for (auto& x : v) x *= scale;
    Histogram h(bins);
    h.add_abs(v.data(), v.size());
    if (h.bins() != bins) {
        std::fprintf(stderr, "bench setup: expected %zu bins, got %zu\n", bins, h.bins());
        std::abort();
    }
    return h;
}

// ALGORITHMS.md §2 literally (O(i) per candidate), to show what the prefix sums buy and to
// check the fast search once.
std::size_t naive_kl_kept_bins(const std::vector<std::uint64_t>& H, std::size_t L, double eps) {
    const std::size_t B = H.size();
    double best = std::numeric_limits<double>::infinity();
    std::size_t best_i = B;
    std::vector<double> P, Q, gsum(L), gcnt(L);
    for (std::size_t i = L; i <= B; ++i) {
        P.assign(H.begin(), H.begin() + static_cast<std::ptrdiff_t>(i));
        for (std::size_t j = i; j < B; ++j) P[i - 1] += static_cast<double>(H[j]);
        std::fill(gsum.begin(), gsum.end(), 0.0);
        std::fill(gcnt.begin(), gcnt.end(), 0.0);
        for (std::size_t j = 0; j < i; ++j) {
            gsum[j * L / i] += static_cast<double>(H[j]);
            gcnt[j * L / i] += H[j] ? 1.0 : 0.0;
        }
        Q.assign(i, 0.0);
        double sp = 0, sq = 0;
        for (std::size_t j = 0; j < i; ++j) {
            Q[j] = H[j] ? gsum[j * L / i] / gcnt[j * L / i] : 0.0;
            sp += P[j];
            sq += Q[j];
        }
        if (sq == 0) continue;
        double kl = 0;
        for (std::size_t j = 0; j < i; ++j) {
            const double p = P[j] / sp, q = Q[j] / sq;
            if (p > 0) kl += q > 0 ? p * std::log(p / q) : p * std::log(p / eps);
        }
        if (kl <= best) {
            best = kl;
            best_i = i;
        }
    }
    return best_i;
}

void BM_KlSearch(benchmark::State& state) {
    const auto bins = static_cast<std::size_t>(state.range(0));
    const Histogram h = histogram_with_bins(bins);
    KlOptions opt;
    opt.search_bins = 0;  // search the histogram as collected
    if (bins <= 2048) {
        const std::size_t ref = naive_kl_kept_bins(h.counts(), 128, opt.epsilon);
        if (kl_search(h, 8, opt).kept_bins != ref) {
            std::fprintf(stderr, "KL search disagrees with the naive reference at %zu bins\n", bins);
            std::abort();
        }
    }
    for (auto _ : state) benchmark::DoNotOptimize(kl_search(h, 8, opt));
    state.counters["candidates"] = static_cast<double>(bins - 128 + 1);
}
BENCHMARK(BM_KlSearch)->Arg(1024)->Arg(2048)->Arg(16384)->Unit(benchmark::kMicrosecond);

void BM_KlSearchNaive(benchmark::State& state) {
    const std::vector<std::uint64_t> counts = histogram_with_bins(static_cast<std::size_t>(state.range(0))).counts();
    for (auto _ : state) benchmark::DoNotOptimize(naive_kl_kept_bins(counts, 128, 1e-10));
}
BENCHMARK(BM_KlSearchNaive)->Arg(1024)->Arg(2048)->Arg(16384)->Unit(benchmark::kMillisecond);

void BM_MseSearch(benchmark::State& state) {
    const Histogram h = histogram_with_bins(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) benchmark::DoNotOptimize(mse_search(h, 8));
}
BENCHMARK(BM_MseSearch)->Arg(2048)->Arg(16384)->Unit(benchmark::kMicrosecond);

// Observing one 1x64x112x112 activation. Arg 0: method (0 max, 1 histogram of |x| (kl),
// 2 asymmetric percentile: histograms of x >= 0 and of -x for x < 0); arg 1: axis
// (-1 per tensor, 1 per channel); arg 2: data (0 Gaussian, 1 ReLU'd Gaussian: half zeros).
void BM_Observe(benchmark::State& state) {
    const Shape shape{1, 64, 112, 112};
    std::vector<float> x = gaussian(static_cast<std::size_t>(shape_numel(shape)), 9);
    if (state.range(2) == 1)
        for (auto& v : x) v = std::max(v, 0.0f);
    ObserverConfig cfg;
    cfg.method = state.range(0) == 0 ? CalibMethod::max : state.range(0) == 1 ? CalibMethod::kl : CalibMethod::percentile;
    cfg.symmetric = state.range(0) != 2;
    cfg.channel_axis = static_cast<int>(state.range(1));
    cfg.histogram_bins = 16384;          // per tensor (the default)
    cfg.channel_histogram_bins = 2048;   // per channel (the default)
    Observer obs(cfg);
    obs.observe(x.data(), shape);  // the grid is set; later batches bin in place
    for (auto _ : state) {
        obs.observe(x.data(), shape);
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations() * shape_numel(shape));
    static const char* const kinds[] = {"minmax", "histogram", "signed-histograms"};
    state.SetLabel(std::string(kinds[state.range(0)]) + (state.range(0) == 0 ? "" : state.range(1) < 0 ? "16384" : "2048") +
                   (state.range(1) < 0 ? " per-tensor" : " per-channel") + (state.range(2) ? " relu" : " gaussian"));
}
BENCHMARK(BM_Observe)
    ->ArgsProduct({{0, 1, 2}, {-1, 1}, {0, 1}})
    ->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
