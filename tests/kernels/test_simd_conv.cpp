// SIMD conv2d / depthwise / gemm equal the reference kernels bit for bit on randomized shapes.
#include <doctest/doctest.h>

#include <bpuq/kernels.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "test_support.hpp"

using namespace bpuq;

namespace {

enum class Fill { random, all_min, all_max, alternating };

template <class T>
std::vector<T> make_values(std::size_t n, Fill fill, int lo, int hi) {
    std::vector<T> v(n);
    std::uniform_int_distribution<int> d(lo, hi);
    for (std::size_t i = 0; i < n; ++i) {
        switch (fill) {
            case Fill::all_min: v[i] = static_cast<T>(lo); break;
            case Fill::all_max: v[i] = static_cast<T>(hi); break;
            case Fill::alternating: v[i] = static_cast<T>(i % 2 ? lo : hi); break;
            default: v[i] = static_cast<T>(d(bpuq_test::rng())); break;
        }
    }
    return v;
}

struct Case {
    Conv2dGeometry g;
    Fill input_fill = Fill::random, weight_fill = Fill::random;
    double multiplier_scale = 1.0;  // 1: outputs spread over the range; large: saturating
    bool relu = false;
    int weight_limit = 0;  // |w| <= weight_limit when > 0, else the weight type's full range
};

template <class T>
constexpr int lowest() {
    return std::numeric_limits<T>::min();
}
template <class T>
constexpr int highest() {
    return std::numeric_limits<T>::max();
}

template <class Arch, class Round, class TIn, class TW, class TOut>
void check_case(const Case& cs, int threads) {
    const Conv2dGeometry& g = cs.g;
    auto& rng = bpuq_test::rng();
    const std::int32_t zp_in = sizeof(TIn) == 1 ? std::uniform_int_distribution<int>(-128, 127)(rng) : 0;
    const auto input = make_values<TIn>(static_cast<std::size_t>(g.input_size()), cs.input_fill, lowest<TIn>(), highest<TIn>());
    const auto weights =
        make_values<TW>(static_cast<std::size_t>(g.weight_size()), cs.weight_fill, -(cs.weight_limit > 0 ? cs.weight_limit : highest<TW>()),
                        cs.weight_limit > 0 ? cs.weight_limit : highest<TW>());
    std::vector<std::int32_t> bias(static_cast<std::size_t>(g.out_c));
    for (auto& b : bias) b = std::uniform_int_distribution<int>(-100000, 100000)(rng);
    std::vector<QuantizedMultiplier> mult(static_cast<std::size_t>(g.out_c));
    const double typical = 1.0 / (std::sqrt(double(g.kernel_h * g.kernel_w * g.in_c_per_group())) * 90.0 *
                                  (sizeof(TIn) == 2 ? 256.0 : 1.0) * (sizeof(TW) == 2 ? 256.0 : 1.0)) *
                           (sizeof(TOut) == 1 ? 40.0 : sizeof(TOut) == 2 ? 10000.0 : 1e6);
    std::uniform_real_distribution<double> spread(0.3, 3.0);
    for (auto& m : mult) m = quantize_multiplier(std::min(typical * spread(rng) * cs.multiplier_scale, 1e9));
    Requantization rq;
    rq.bias = bias.data();
    rq.multipliers = mult.data();
    rq.zero_point = sizeof(TOut) == 1 ? std::uniform_int_distribution<int>(-20, 20)(rng) : 0;
    fused_activation_bounds(cs.relu ? FusedActivation::relu : FusedActivation::none, 0.1f, rq.zero_point, lowest<TOut>(),
                            highest<TOut>(), rq.lo, rq.hi);
    std::vector<TOut> want(static_cast<std::size_t>(g.output_size())), got(want.size());
    reference::conv2d<Round>(g, input.data(), zp_in, weights.data(), rq, want.data());
    const simd::PackedConvWeights packed = simd::PackedConvWeights::pack(g, weights.data());
    simd::conv2d<Arch, Round>(KernelContext::with_threads(threads), g, input.data(), zp_in, packed, rq, got.data());
    for (std::size_t i = 0; i < want.size(); ++i) {
        if (want[i] != got[i]) {
            INFO(g.to_string() << ", arch " << std::string(simd::level_name<Arch>()) << ", in " << sizeof(TIn) * 8
                               << " w " << sizeof(TW) * 8 << " out " << sizeof(TOut) * 8 << ", element " << i << ", threads "
                               << threads);
            REQUIRE(std::int64_t(got[i]) == std::int64_t(want[i]));
        }
    }
}

std::vector<Case> random_cases(int count) {
    auto& rng = bpuq_test::rng();
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    std::vector<Case> cases;
    const int kernels[] = {1, 3, 5, 7};
    for (int i = 0; i < count; ++i) {
        Case c;
        Conv2dGeometry& g = c.g;
        const int k = kernels[pick(0, 3)];
        g.kernel_h = k;
        g.kernel_w = pick(0, 3) == 0 ? kernels[pick(0, 3)] : k;
        g.stride_h = pick(1, 2);
        g.stride_w = pick(0, 2) == 0 ? 3 - g.stride_h : g.stride_h;
        g.dilation_h = g.dilation_w = pick(0, 3) == 0 ? 2 : 1;
        const int kind = pick(0, 3);  // 0 dense, 1 grouped, 2 depthwise, 3 dense wide
        const int groups = kind == 1 ? pick(2, 4) : 1;
        if (kind == 2) {
            g.in_c = g.out_c = g.groups = pick(2, 40);
        } else {
            g.groups = groups;
            g.in_c = groups * pick(1, kind == 3 ? 40 : 9);
            g.out_c = groups * pick(1, kind == 3 ? 37 : 20);
        }
        g.pad_top = pick(0, g.kernel_h / 2 + 1);
        g.pad_bottom = pick(0, g.kernel_h / 2);
        g.pad_left = pick(0, g.kernel_w / 2);
        g.pad_right = pick(0, g.kernel_w / 2 + 1);
        g.in_h = pick(g.dilation_h * (g.kernel_h - 1) + 1, 14);
        g.in_w = pick(g.dilation_w * (g.kernel_w - 1) + 1, 17);
        g.batch = pick(1, 2);
        c.relu = pick(0, 1) == 1;
        cases.push_back(c);
    }
    return cases;
}

// kernels_fast (also run under ASan/UBSan) compiles this file with BPUQ_KERNELS_FAST=1: fewer cases.
#if defined(BPUQ_KERNELS_FAST) && BPUQ_KERNELS_FAST
constexpr int kCaseDivisor = 10;
#else
constexpr int kCaseDivisor = 1;
#endif

#define BPUQ_CONV_ARCHS bpuq::simd::scalar, xsimd::sse4_1, xsimd::avx2, bpuq::simd::avx512_vnni, bpuq::simd::default_arch

}  // namespace

TEST_CASE_TEMPLATE("simd conv2d equals the reference on random shapes (int8 in/out, both roundings, threads)", Arch,
                   BPUQ_CONV_ARCHS) {
    int i = 0;
    for (const Case& c : random_cases(60 / kCaseDivisor)) {
        check_case<Arch, RoundHalfAwayFromZero, std::int8_t, std::int8_t, std::int8_t>(c, 1 + i % 3);
        check_case<Arch, RoundHalfToEven, std::int8_t, std::int8_t, std::int8_t>(c, 1);
        ++i;
    }
}

TEST_CASE_TEMPLATE("simd conv2d equals the reference for int16 activations, int16 weights and wide outputs", Arch,
                   BPUQ_CONV_ARCHS) {
    int i = 0;
    for (const Case& c : random_cases(30 / kCaseDivisor)) {
        check_case<Arch, RoundHalfAwayFromZero, std::int16_t, std::int8_t, std::int16_t>(c, 1 + i % 2);
        check_case<Arch, RoundHalfToEven, std::int16_t, std::int8_t, std::int8_t>(c, 1);
        check_case<Arch, RoundHalfAwayFromZero, std::int8_t, std::int8_t, std::int32_t>(c, 2);
        check_case<Arch, RoundHalfAwayFromZero, std::int8_t, std::int8_t, std::int16_t>(c, 1);
        check_case<Arch, RoundHalfToEven, std::int16_t, std::int16_t, std::int16_t>(c, 1);
        check_case<Arch, RoundHalfAwayFromZero, std::int8_t, std::int16_t, std::int8_t>(c, 1);
        ++i;
    }
}

TEST_CASE_TEMPLATE("simd conv2d equals the reference on saturating and extreme inputs", Arch, BPUQ_CONV_ARCHS) {
    std::vector<Case> cases = random_cases(12 / kCaseDivisor + 1);
    // a layer with a long reduction: int16 activations need the int64 path here
    Case big;
    big.g.in_h = big.g.in_w = 6;
    big.g.in_c = 300;
    big.g.out_c = 19;
    big.g.kernel_h = big.g.kernel_w = 3;
    big.g.pad_top = big.g.pad_left = big.g.pad_bottom = big.g.pad_right = 1;
    cases.push_back(big);
    for (Case c : cases) {
        for (Fill in_fill : {Fill::all_min, Fill::all_max, Fill::alternating})
            for (Fill w_fill : {Fill::all_min, Fill::all_max, Fill::alternating}) {
                c.input_fill = in_fill;
                c.weight_fill = w_fill;
                c.multiplier_scale = 1.0;
                check_case<Arch, RoundHalfAwayFromZero, std::int8_t, std::int8_t, std::int8_t>(c, 1);
                check_case<Arch, RoundHalfAwayFromZero, std::int16_t, std::int8_t, std::int16_t>(c, 2);
                c.multiplier_scale = 1e5;  // everything saturates
                check_case<Arch, RoundHalfToEven, std::int8_t, std::int8_t, std::int8_t>(c, 1);
                check_case<Arch, RoundHalfToEven, std::int16_t, std::int8_t, std::int8_t>(c, 1);
                check_case<Arch, RoundHalfAwayFromZero, std::int8_t, std::int8_t, std::int32_t>(c, 1);
            }
        c.input_fill = c.weight_fill = Fill::random;
        check_case<Arch, RoundHalfAwayFromZero, std::int16_t, std::int16_t, std::int32_t>(c, 1);
    }
}

TEST_CASE_TEMPLATE("simd depthwise with int16 activations and int16 weights sums chunks of taps in int64", Arch, BPUQ_CONV_ARCHS) {
    // 32768 * 32767 per tap: nine taps leave int32, so the VNNI path sums chunks of taps that
    // provably fit (one tap at full range, several with smaller weights) and adds them in int64;
    // sums outside int32 take the reference output stage
    std::vector<Case> cases;
    for (int k : {3, 5}) {
        Case c;
        c.g.in_c = c.g.out_c = c.g.groups = k == 3 ? 40 : 17;
        c.g.kernel_h = c.g.kernel_w = k;
        c.g.in_h = 9;
        c.g.in_w = 11;
        c.g.pad_top = c.g.pad_left = c.g.pad_bottom = c.g.pad_right = k / 2;
        c.g.stride_h = c.g.stride_w = k == 3 ? 1 : 2;
        cases.push_back(c);
    }
    for (Case c : cases)
        for (int limit : {0, 9000, 3000})
            for (Fill fill : {Fill::random, Fill::all_max, Fill::all_min, Fill::alternating}) {
                c.weight_limit = limit;
                c.input_fill = c.weight_fill = fill;
                c.multiplier_scale = fill == Fill::random ? 1.0 : 1e-4;
                check_case<Arch, RoundHalfAwayFromZero, std::int16_t, std::int16_t, std::int16_t>(c, 1 + limit % 2);
                check_case<Arch, RoundHalfToEven, std::int16_t, std::int16_t, std::int32_t>(c, 2);
                check_case<Arch, RoundHalfAwayFromZero, std::int8_t, std::int16_t, std::int8_t>(c, 1);
            }
}

TEST_CASE_TEMPLATE("simd conv2d equals the reference on wide channel tiles and pointwise layers", Arch, BPUQ_CONV_ARCHS) {
    // The int8 VNNI path switches to 64-channel tiles for short reductions and runs 1x1 / stride 1 /
    // unpadded layers as one pixel run per image (crossing rows); random_cases never has more
    // than 40 output channels per group, so these shapes cover the chunking and tails.
    struct Shape {
        int in_c, out_c, h, w, k, stride, pad, groups, batch;
    };
    const Shape shapes[] = {
        {3, 64, 7, 7, 1, 1, 0, 1, 1},   {24, 144, 13, 11, 1, 1, 0, 1, 2}, {33, 65, 9, 10, 1, 1, 0, 1, 1},
        {160, 97, 7, 7, 1, 1, 0, 1, 1}, {16, 80, 9, 9, 1, 2, 0, 1, 1},    {12, 70, 6, 7, 1, 1, 1, 1, 1},
        {8, 96, 8, 9, 3, 1, 1, 1, 2},   {16, 140, 7, 8, 1, 1, 0, 2, 1},   {64, 70, 6, 9, 3, 1, 1, 1, 1},
    };
    int i = 0;
    for (const Shape& s : shapes) {
        Case c;
        Conv2dGeometry& g = c.g;
        g.in_c = s.in_c;
        g.out_c = s.out_c;
        g.in_h = s.h;
        g.in_w = s.w;
        g.kernel_h = g.kernel_w = s.k;
        g.stride_h = g.stride_w = s.stride;
        g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = s.pad;
        g.groups = s.groups;
        g.batch = s.batch;
        c.relu = i % 2 == 1;
        check_case<Arch, RoundHalfAwayFromZero, std::int8_t, std::int8_t, std::int8_t>(c, 1 + i % 3);
        check_case<Arch, RoundHalfToEven, std::int8_t, std::int8_t, std::int8_t>(c, 2);
        check_case<Arch, RoundHalfAwayFromZero, std::int8_t, std::int8_t, std::int16_t>(c, 1);
        check_case<Arch, RoundHalfAwayFromZero, std::int8_t, std::int8_t, std::int32_t>(c, 3);
        check_case<Arch, RoundHalfAwayFromZero, std::int16_t, std::int8_t, std::int16_t>(c, 2);
        c.multiplier_scale = 1e5;  // saturating: the clamping stage forms
        check_case<Arch, RoundHalfAwayFromZero, std::int8_t, std::int8_t, std::int8_t>(c, 1);
        c.multiplier_scale = 1.0;
        c.input_fill = Fill::all_max;
        c.weight_fill = Fill::alternating;
        check_case<Arch, RoundHalfToEven, std::int8_t, std::int8_t, std::int8_t>(c, 1);
        ++i;
    }
}

TEST_CASE_TEMPLATE("simd conv2d handles multipliers and shifts at their limits", Arch, BPUQ_CONV_ARCHS) {
    Conv2dGeometry g;
    g.in_h = 5;
    g.in_w = 9;
    g.in_c = 10;
    g.out_c = 21;
    g.kernel_h = g.kernel_w = 3;
    g.pad_top = g.pad_left = 1;
    const auto input = make_values<std::int8_t>(static_cast<std::size_t>(g.input_size()), Fill::random, -128, 127);
    const auto weights = make_values<std::int8_t>(static_cast<std::size_t>(g.weight_size()), Fill::random, -127, 127);
    const simd::PackedConvWeights packed = simd::PackedConvWeights::pack(g, weights.data());
    std::vector<QuantizedMultiplier> mult(21);
    for (std::size_t c = 0; c < mult.size(); ++c) {
        switch (c % 5) {
            case 0: mult[c] = QuantizedMultiplier{std::numeric_limits<std::int32_t>::max(), 30}; break;  // t = 1
            case 1: mult[c] = QuantizedMultiplier{std::numeric_limits<std::int32_t>::max(), -31}; break; // t = 62
            case 2: mult[c] = QuantizedMultiplier{1 << 30, -20}; break;
            case 3: mult[c] = QuantizedMultiplier{}; break;                                                 // M = 0
            default: mult[c] = quantize_multiplier(0.0123); break;
        }
    }
    for (bool per_channel : {true, false}) {
        Requantization rq;
        rq.multipliers = mult.data();
        rq.per_channel = per_channel;
        rq.zero_point = 7;
        rq.lo = std::numeric_limits<std::int32_t>::min();
        rq.hi = std::numeric_limits<std::int32_t>::max();
        std::vector<std::int32_t> want(static_cast<std::size_t>(g.output_size())), got(want.size());
        reference::conv2d(g, input.data(), -3, weights.data(), rq, want.data());
        simd::conv2d<Arch>(KernelContext{}, g, input.data(), -3, packed, rq, got.data());
        CHECK(want == got);
        std::vector<std::int8_t> want8(want.size()), got8(want.size());
        rq.lo = -128;
        rq.hi = 127;
        reference::conv2d<RoundHalfToEven>(g, input.data(), -3, weights.data(), rq, want8.data());
        simd::conv2d<Arch, RoundHalfToEven>(KernelContext{}, g, input.data(), -3, packed, rq, got8.data());
        CHECK(want8 == got8);
    }
}

TEST_CASE_TEMPLATE("simd gemm equals the reference, with and without a weight zero point", Arch, BPUQ_CONV_ARCHS) {
    auto& rng = bpuq_test::rng();
    for (int rep = 0; rep < 12; ++rep) {
        GemmGeometry gg;
        gg.m = std::uniform_int_distribution<int>(1, 23)(rng);
        gg.n = std::uniform_int_distribution<int>(1, 50)(rng);
        gg.k = std::uniform_int_distribution<int>(1, 700)(rng);
        const auto a = make_values<std::int8_t>(std::size_t(gg.m) * gg.k, Fill::random, -128, 127);
        const auto b = make_values<std::int8_t>(std::size_t(gg.n) * gg.k, Fill::random, -128, 127);
        const std::int32_t zp_b = rep % 3 == 0 ? 11 : 0;
        std::vector<QuantizedMultiplier> mult(static_cast<std::size_t>(gg.n));
        for (auto& m : mult) m = quantize_multiplier(std::uniform_real_distribution<double>(1e-4, 2e-3)(rng));
        Requantization rq;
        rq.multipliers = mult.data();
        rq.zero_point = -4;
        std::vector<std::int8_t> want(std::size_t(gg.m) * gg.n), got(want.size());
        reference::gemm(gg, a.data(), 5, b.data(), zp_b, rq, want.data());
        const simd::PackedConvWeights packed = simd::pack_gemm_weights(gg.n, gg.k, b.data(), zp_b);
        simd::gemm<Arch>(KernelContext::with_threads(1 + rep % 2), gg, a.data(), 5, packed, rq, got.data());
        CHECK(want == got);
    }
}

namespace {

/// Per-channel multipliers for the output-stage sweep: typical ones, every shift, the limits.
QuantizedMultiplier stage_multiplier(int kind) {
    auto& rng = bpuq_test::rng();
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    const std::int32_t m_any = std::uniform_int_distribution<std::int32_t>(1 << 30, std::numeric_limits<std::int32_t>::max())(rng);
    switch (kind) {
        case 0: return quantize_multiplier(std::pow(10.0, std::uniform_real_distribution<double>(-7.0, -0.7)(rng)));
        case 1: return QuantizedMultiplier{m_any, pick(-31, 30)};                                     // any shift t in [1, 62]
        case 2: return QuantizedMultiplier{std::numeric_limits<std::int32_t>::max(), pick(0, 1) ? 30 : -31};  // t = 1, 62
        case 3: return QuantizedMultiplier{1 << 30, pick(-31, 30)};                                  // powers of two: ties
        case 4: return QuantizedMultiplier{};                                                        // M = 0
        case 5: return QuantizedMultiplier{(1 << 30) + (pick(0, 1023) << 20), pick(-12, 0)};            // trailing zeros
        case 6: return QuantizedMultiplier{m_any, pick(-2, 1)};                                       // t in [30, 33]
        default: return quantize_multiplier(std::uniform_real_distribution<double>(0.26, 3.0)(rng));  // M around 1
    }
}

/// Accumulators that stress the stage: int32 extremes, values next to every rounding
/// threshold of the channel's output range and exact ties where the multiplier allows them.
std::int32_t stage_accumulator(const QuantizedMultiplier& qm, std::int64_t lo, std::int64_t hi) {
    auto& rng = bpuq_test::rng();
    constexpr std::int64_t kMin = std::numeric_limits<std::int32_t>::min(), kMax = std::numeric_limits<std::int32_t>::max();
    const int kind = std::uniform_int_distribution<int>(0, 5)(rng);
    std::int64_t x = 0;
    const double m = qm.multiplier ? std::ldexp(double(qm.multiplier), -qm.total_right_shift()) : 0.0;
    switch (kind) {
        case 0: x = std::uniform_int_distribution<std::int64_t>(kMin, kMax)(rng); break;
        case 1: x = std::uniform_int_distribution<int>(0, 3)(rng) < 2 ? kMin + std::uniform_int_distribution<int>(0, 2)(rng)
                                                                       : kMax - std::uniform_int_distribution<int>(0, 2)(rng);
                break;
        case 2: x = std::uniform_int_distribution<int>(-300, 300)(rng); break;
        default: {
            // next to (k + 1/2) / M for an output k around the range: ties and their neighbours
            if (m == 0.0) return static_cast<std::int32_t>(std::uniform_int_distribution<int>(-9, 9)(rng));
            const std::int64_t k = std::uniform_int_distribution<std::int64_t>(std::max(lo - 3, std::int64_t(-70000)),
                                                                                std::min(hi + 3, std::int64_t(70000)))(rng);
            const double centre = (double(k) + 0.5) / m;
            x = static_cast<std::int64_t>(std::llround(std::max(-3e9, std::min(3e9, centre)))) +
                std::uniform_int_distribution<int>(-2, 2)(rng);
            break;
        }
    }
    return static_cast<std::int32_t>(std::max(kMin, std::min(kMax, x)));
}

template <class Arch, class Round, class TOut>
void check_output_stage(int reps, bool typical_only) {
    auto& rng = bpuq_test::rng();
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    int fast_seen = 0;
    for (int rep = 0; rep < reps; ++rep) {
        const int channels = pick(1, 45);
        const int pixels = pick(1, 40);
        std::vector<QuantizedMultiplier> mult(static_cast<std::size_t>(channels));
        const int family = typical_only ? 0 : pick(0, 7);
        for (auto& m : mult) m = stage_multiplier(pick(0, 2) == 0 ? family : typical_only ? 0 : pick(0, 7));
        if (typical_only)
            for (auto& m : mult) m = stage_multiplier(0);
        std::vector<std::int32_t> bias(static_cast<std::size_t>(channels));
        for (auto& b : bias) b = pick(0, 3) == 0 ? 0 : pick(-1000000, 1000000);
        Requantization rq;
        rq.multipliers = mult.data();
        rq.per_channel = pick(0, 5) != 0;
        rq.bias = pick(0, 4) == 0 ? nullptr : bias.data();
        const std::int64_t tmin = std::numeric_limits<TOut>::min(), tmax = std::numeric_limits<TOut>::max();
        rq.zero_point = sizeof(TOut) == 1 ? pick(-128, 127) : sizeof(TOut) == 2 ? pick(-3, 3) : pick(-100000, 100000);
        rq.lo = static_cast<std::int32_t>(tmin);
        rq.hi = static_cast<std::int32_t>(tmax);
        switch (pick(0, 3)) {
            case 0: rq.lo = static_cast<std::int32_t>(std::max<std::int64_t>(tmin, std::min<std::int64_t>(tmax, rq.zero_point))); break;  // ReLU
            case 1: {  // a random sub-range (Clip), possibly a single value
                const std::int64_t a = std::uniform_int_distribution<std::int64_t>(tmin, tmax)(rng);
                const std::int64_t b = std::uniform_int_distribution<std::int64_t>(tmin, tmax)(rng);
                rq.lo = static_cast<std::int32_t>(std::min(a, b));
                rq.hi = static_cast<std::int32_t>(pick(0, 9) == 0 ? std::min(a, b) : std::max(a, b));
                break;
            }
            default: break;
        }
        std::vector<std::int32_t> acc(static_cast<std::size_t>(pixels) * channels);
        for (int p = 0; p < pixels; ++p)
            for (int c = 0; c < channels; ++c) {
                const std::size_t cc = rq.per_channel ? static_cast<std::size_t>(c) : 0;
                std::int64_t x = stage_accumulator(mult[cc], std::int64_t(rq.lo) - rq.zero_point - rq.bias_of(static_cast<std::size_t>(c)),
                                                   std::int64_t(rq.hi) - rq.zero_point - rq.bias_of(static_cast<std::size_t>(c)));
                // acc + bias is formed in int32 (reference and SIMD): keep it in range
                const std::int64_t b = rq.bias_of(static_cast<std::size_t>(c));
                x = std::max<std::int64_t>(std::numeric_limits<std::int32_t>::min() - std::min<std::int64_t>(b, 0),
                                           std::min<std::int64_t>(std::numeric_limits<std::int32_t>::max() - std::max<std::int64_t>(b, 0), x));
                acc[static_cast<std::size_t>(p) * channels + c] = static_cast<std::int32_t>(x);
            }
        std::vector<TOut> want(acc.size()), got(acc.size());
        for (int p = 0; p < pixels; ++p)
            for (int c = 0; c < channels; ++c)
                want[static_cast<std::size_t>(p) * channels + c] =
                    requantize_output<TOut, Round>(acc[static_cast<std::size_t>(p) * channels + c], rq, static_cast<std::size_t>(c));
        simd::requantize_accumulators<Arch, Round>(acc.data(), pixels, channels, rq, got.data());
        fast_seen += simd::fast_output_stage_applies<Round>(rq, channels) ? 1 : 0;
        for (std::size_t i = 0; i < want.size(); ++i)
            if (want[i] != got[i]) {
                const std::size_t c = i % static_cast<std::size_t>(channels);
                const QuantizedMultiplier& qm = rq.multiplier(c);
                INFO("arch " << std::string(simd::level_name<Arch>()) << ", out " << sizeof(TOut) * 8 << ", acc " << acc[i]
                             << ", bias " << rq.bias_of(c) << ", m0 " << qm.multiplier << ", shift " << qm.shift << ", zp "
                             << rq.zero_point << ", [" << rq.lo << ", " << rq.hi << "], fast "
                             << simd::fast_output_stage_applies<Round>(rq, channels));
                REQUIRE(std::int64_t(got[i]) == std::int64_t(want[i]));
            }
    }
    // the 32-bit stage must be what typical int8/int16 layers get (else this sweep tests nothing
    // new). Not every draw: a multiplier with many trailing zero bits (seen: m0 = 1250918400,
    // 2^15 | m0, total shift 44, int16 Clip range of 21,000 steps) admits rounding ties over the
    // clamp range and rightly takes the 64-bit form; it depends on the shared RNG's sequence.
    if (typical_only && sizeof(TOut) < 4) CHECK(4 * fast_seen >= 3 * reps);
}

}  // namespace

TEST_CASE_TEMPLATE("simd output stage equals the reference for every multiplier, shift, bound and int32 accumulator", Arch,
                   BPUQ_CONV_ARCHS) {
    const int reps = 400 / kCaseDivisor;
    check_output_stage<Arch, RoundHalfAwayFromZero, std::int8_t>(reps, false);
    check_output_stage<Arch, RoundHalfToEven, std::int8_t>(reps, false);
    check_output_stage<Arch, RoundHalfAwayFromZero, std::int16_t>(reps, false);
    check_output_stage<Arch, RoundHalfToEven, std::int16_t>(reps, false);
    check_output_stage<Arch, RoundHalfAwayFromZero, std::int32_t>(reps, false);
    check_output_stage<Arch, RoundHalfToEven, std::int32_t>(reps, false);
    check_output_stage<Arch, RoundHalfAwayFromZero, std::int8_t>(reps / 4, true);
    check_output_stage<Arch, RoundHalfToEven, std::int8_t>(reps / 4, true);
    check_output_stage<Arch, RoundHalfAwayFromZero, std::int16_t>(reps / 4, true);
}

TEST_CASE("kernel thread pool: parallel_for reuses its workers, covers every index once, nests and rethrows") {
    const KernelContext ctx = KernelContext::with_threads(3);
    REQUIRE(ctx.pool);
    CHECK(ctx.pool->size() == 3);
    std::vector<std::thread::id> ids;
    std::mutex ids_mutex;
    for (int rep = 0; rep < 2000; ++rep) {
        const std::int64_t n = rep % 7;
        std::vector<std::atomic<int>> hits(static_cast<std::size_t>(n));
        parallel_for(ctx, n, [&](std::int64_t b, std::int64_t e) {
            for (std::int64_t i = b; i < e; ++i) hits[static_cast<std::size_t>(i)].fetch_add(1);
            std::lock_guard<std::mutex> lock(ids_mutex);
            if (std::find(ids.begin(), ids.end(), std::this_thread::get_id()) == ids.end())
                ids.push_back(std::this_thread::get_id());
        });
        for (auto& h : hits) REQUIRE(h.load() == 1);
    }
    CHECK(ids.size() <= 3);  // the caller and the two workers, never a thread per call
    // nested: the inner loop finds the pool busy and runs on the calling thread
    std::atomic<int> inner{0};
    parallel_for(ctx, 3, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t i = b; i < e; ++i)
            parallel_for(ctx, 5, [&](std::int64_t b2, std::int64_t e2) { inner.fetch_add(static_cast<int>(e2 - b2)); });
    });
    CHECK(inner.load() == 15);
    // concurrent callers sharing one context
    std::atomic<int> total{0};
    std::vector<std::thread> callers;
    for (int t = 0; t < 3; ++t)
        callers.emplace_back([&] {
            for (int rep = 0; rep < 300; ++rep)
                parallel_for(ctx, 4, [&](std::int64_t b, std::int64_t e) { total.fetch_add(static_cast<int>(e - b)); });
        });
    for (auto& c : callers) c.join();
    CHECK(total.load() == 3 * 300 * 4);
    // an exception in a worker's range reaches the caller, and the pool keeps working
    CHECK_THROWS_AS(parallel_for(ctx, 3,
                                 [&](std::int64_t b, std::int64_t) {
                                     if (b == 2) throw std::runtime_error("range 2");
                                 }),
                    std::runtime_error);
    std::atomic<int> after{0};
    parallel_for(ctx, 3, [&](std::int64_t b, std::int64_t e) { after.fetch_add(static_cast<int>(e - b)); });
    CHECK(after.load() == 3);
    // a hand-made context without a pool still splits (threads per call)
    KernelContext manual;
    manual.threads = 2;
    std::atomic<int> m{0};
    parallel_for(manual, 10, [&](std::int64_t b, std::int64_t e) { m.fetch_add(static_cast<int>(e - b)); });
    CHECK(m.load() == 10);
}

TEST_CASE("simd conv2d rejects weights packed for another geometry") {
    Conv2dGeometry g;
    g.in_h = g.in_w = 4;
    g.in_c = 4;
    g.out_c = 4;
    std::vector<std::int8_t> w(16, 1), x(64, 0), y(64);
    const auto packed = simd::PackedConvWeights::pack(g, w.data());
    Conv2dGeometry other = g;
    other.out_c = 2;
    const QuantizedMultiplier m = quantize_multiplier(0.5);
    Requantization rq;
    rq.multipliers = &m;
    rq.per_channel = false;
    CHECK_THROWS_WITH_AS(simd::conv2d(KernelContext{}, other, x.data(), 0, packed, rq, y.data()),
                         doctest::Contains("[bpuq.kernels.conv]"), Error);
    CHECK_THROWS_WITH_AS(KernelContext::with_threads(0), doctest::Contains("[bpuq.kernels.threads]"), Error);
}
