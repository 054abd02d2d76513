// Throughput (elements/s) of quantize / dequantize / requantize spans: SIMD paths vs the scalar loop.
#include <benchmark/benchmark.h>

#include <bpuq/kernels.hpp>

#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

using namespace bpuq;

namespace {

constexpr float kScale = 0.0371f;
constexpr std::int32_t kZp = -3;

std::vector<float> random_floats(std::size_t n) {
    std::mt19937 g(7);
    std::normal_distribution<float> d(0.0f, 2.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

template <class Q>
std::vector<Q> random_q(std::size_t n) {
    std::mt19937 g(9);
    std::uniform_int_distribution<int> d(std::numeric_limits<Q>::min(), std::numeric_limits<Q>::max());
    std::vector<Q> v(n);
    for (auto& x : v) x = static_cast<Q>(d(g));
    return v;
}

template <class Q>
constexpr std::int32_t qmin_v = std::numeric_limits<Q>::min();
template <class Q>
constexpr std::int32_t qmax_v = std::numeric_limits<Q>::max();

/// Runs the kernel once and aborts if it differs from the scalar reference: a fast wrong kernel
/// must not produce a number.
template <class Q, class Kernel>
void check_quantize_once(const std::vector<float>& x, Kernel&& kernel) {
    std::vector<Q> want(x.size()), got(x.size());
    reference::quantize_span(x.data(), want.data(), static_cast<std::int64_t>(x.size()), kScale, kZp, qmin_v<Q>, qmax_v<Q>);
    kernel(x.data(), got.data());
    if (want != got) {
        std::fprintf(stderr, "bench_quantize: kernel differs from the reference\n");
        std::abort();
    }
}

template <class Arch, class Q>
void BM_quantize(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const std::vector<float> x = random_floats(n);
    std::vector<Q> q(n);
    auto kernel = [&](const float* in, Q* out) {
        simd::quantize_span<Arch>(in, out, static_cast<std::int64_t>(n), kScale, kZp, qmin_v<Q>, qmax_v<Q>);
    };
    check_quantize_once<Q>(x, kernel);
    for (auto _ : state) {
        kernel(x.data(), q.data());
        benchmark::DoNotOptimize(q.data());
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
    state.SetLabel(simd::level_name<Arch>());
}

/// The plain loop a user would write first (std::round of x * (1/scale)), for scale.
template <class Q>
void BM_quantize_plain_loop(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const std::vector<float> x = random_floats(n);
    std::vector<Q> q(n);
    for (auto _ : state) {
        for (std::size_t i = 0; i < n; ++i) {
            const float v = std::round(x[i] / kScale) + static_cast<float>(kZp);
            q[i] = static_cast<Q>(v < qmin_v<Q> ? qmin_v<Q> : (v > qmax_v<Q> ? qmax_v<Q> : v));
        }
        benchmark::DoNotOptimize(q.data());
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}

template <class Arch, class Q>
void BM_dequantize(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const std::vector<Q> q = random_q<Q>(n);
    std::vector<float> want(n), x(n);
    reference::dequantize_span(q.data(), want.data(), static_cast<std::int64_t>(n), kScale, kZp);
    simd::dequantize_span<Arch>(q.data(), x.data(), static_cast<std::int64_t>(n), kScale, kZp);
    if (std::memcmp(want.data(), x.data(), n * sizeof(float)) != 0) std::abort();
    for (auto _ : state) {
        simd::dequantize_span<Arch>(q.data(), x.data(), static_cast<std::int64_t>(n), kScale, kZp);
        benchmark::DoNotOptimize(x.data());
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
    state.SetLabel(simd::level_name<Arch>());
}

template <class Arch, class QIn, class QOut>
void BM_requantize(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    const std::vector<QIn> q = random_q<QIn>(n);
    std::vector<QOut> want(n), out(n);
    const QuantizedMultiplier qm = quantize_multiplier(0.73);
    reference::requantize_span(q.data(), want.data(), static_cast<std::int64_t>(n), 3, qm, -5, qmin_v<QOut>, qmax_v<QOut>);
    simd::requantize_span<Arch>(q.data(), out.data(), static_cast<std::int64_t>(n), 3, qm, -5, qmin_v<QOut>, qmax_v<QOut>);
    if (want != out) std::abort();
    for (auto _ : state) {
        simd::requantize_span<Arch>(q.data(), out.data(), static_cast<std::int64_t>(n), 3, qm, -5, qmin_v<QOut>,
                                    qmax_v<QOut>);
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
    state.SetLabel(simd::level_name<Arch>());
}

// 1 << 16 elements stays in L2 (kernel speed); 1 << 22 streams from memory.
#define BPUQ_SIZES ->Arg(1 << 16)->Arg(1 << 22)

BENCHMARK_TEMPLATE(BM_quantize, simd::scalar, std::int8_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_quantize, xsimd::sse4_1, std::int8_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_quantize, xsimd::avx2, std::int8_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_quantize, xsimd::avx2, std::int16_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_quantize, simd::avx512_vnni, std::int8_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_quantize, simd::avx512_vnni, std::int16_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_quantize_plain_loop, std::int8_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_dequantize, simd::scalar, std::int8_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_dequantize, xsimd::sse4_1, std::int8_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_dequantize, xsimd::avx2, std::int8_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_dequantize, xsimd::avx2, std::int16_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_dequantize, simd::avx512_vnni, std::int8_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_requantize, simd::scalar, std::int8_t, std::int8_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_requantize, xsimd::avx2, std::int8_t, std::int8_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_requantize, xsimd::avx2, std::int16_t, std::int8_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_requantize, simd::avx512_vnni, std::int8_t, std::int8_t) BPUQ_SIZES;
BENCHMARK_TEMPLATE(BM_requantize, simd::avx512_vnni, std::int16_t, std::int8_t) BPUQ_SIZES;

}  // namespace

BENCHMARK_MAIN();
