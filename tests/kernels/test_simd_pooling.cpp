// SIMD pooling, eltwise, int8/int16 LUT, concat and resize kernels equal the reference kernels bit for bit on randomized shapes and parameters.
#include <doctest/doctest.h>

#include <bpuq/kernels.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "test_support.hpp"

using namespace bpuq;

namespace {

int pick(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(bpuq_test::rng()); }

template <class T>
std::vector<T> values(std::size_t n, int mode) {
    std::vector<T> v(n);
    const int lo = std::numeric_limits<T>::min(), hi = std::numeric_limits<T>::max();
    for (std::size_t i = 0; i < n; ++i)
        v[i] = static_cast<T>(mode == 1 ? lo : mode == 2 ? hi : mode == 3 ? (i % 2 ? lo : hi) : pick(lo, hi));
    return v;
}

Pool2dGeometry random_pool() {
    Pool2dGeometry g;
    g.batch = pick(1, 2);
    g.channels = pick(1, 150);  // odd counts, below and above one register
    g.kernel_h = pick(1, 4);
    g.kernel_w = pick(0, 3) == 0 ? pick(1, 4) : g.kernel_h;
    g.stride_h = pick(1, 3);
    g.stride_w = pick(1, 3);
    g.pad_top = pick(0, g.kernel_h - 1);
    g.pad_bottom = pick(0, g.kernel_h - 1);
    g.pad_left = pick(0, g.kernel_w - 1);
    g.pad_right = pick(0, g.kernel_w - 1);
    g.in_h = pick(std::max(1, g.kernel_h - g.pad_top - g.pad_bottom), 9);
    g.in_w = pick(std::max(1, g.kernel_w - g.pad_left - g.pad_right), 9);
    return g;
}

#define BPUQ_POOL_ARCHS bpuq::simd::scalar, xsimd::sse4_1, xsimd::avx2, bpuq::simd::avx512_vnni, bpuq::simd::default_arch

template <class Arch, class T>
void check_max_pool(int reps) {
    for (int rep = 0; rep < reps; ++rep) {
        const Pool2dGeometry g = random_pool();
        const std::size_t in_n = static_cast<std::size_t>(g.batch) * g.in_h * g.in_w * g.channels;
        const auto x = values<T>(in_n, rep % 5);
        std::vector<T> want(static_cast<std::size_t>(g.batch) * g.out_h() * g.out_w() * g.channels), got(want.size());
        reference::max_pool2d(g, x.data(), want.data());
        simd::max_pool2d<Arch>(g, x.data(), got.data());
        REQUIRE(want == got);
    }
}

template <class Arch, class Round, class TIn, class TOut>
void check_avg_pool(int reps) {
    for (int rep = 0; rep < reps; ++rep) {
        const Pool2dGeometry g = random_pool();
        const std::size_t in_n = static_cast<std::size_t>(g.batch) * g.in_h * g.in_w * g.channels;
        const auto x = values<TIn>(in_n, rep % 5);
        const std::int32_t zp_in = sizeof(TIn) == 1 ? pick(-128, 127) : 0, zp_out = sizeof(TOut) == 1 ? pick(-128, 127) : 0;
        std::int32_t lo = std::numeric_limits<TOut>::min(), hi = std::numeric_limits<TOut>::max();
        if (rep % 3 == 0) lo = zp_out;  // ReLU
        // the real multiplier: ordinary, tiny, and exact powers of two (ties)
        const double m = rep % 4 == 0 ? 1.0 : rep % 4 == 1 ? std::ldexp(1.0, -pick(0, 9)) : std::pow(10.0, -3.0 + 3.5 * pick(0, 100) / 100.0);
        const AverageRescale r(m * (sizeof(TIn) == 2 && sizeof(TOut) == 1 ? 1.0 / 256 : 1.0), std::int64_t(g.kernel_h) * g.kernel_w,
                               zp_in, zp_out, lo, hi);
        const bool include_pad = rep % 2 == 0;
        std::vector<TOut> want(static_cast<std::size_t>(g.batch) * g.out_h() * g.out_w() * g.channels), got(want.size());
        reference::avg_pool2d<Round>(g, x.data(), include_pad, r, want.data());
        simd::avg_pool2d<Arch, Round>(g, x.data(), include_pad, r, got.data());
        REQUIRE(want == got);
    }
}

template <class Arch, class Round, class TIn, class TOut>
void check_reduce_mean(int reps) {
    for (int rep = 0; rep < reps; ++rep) {
        const std::int64_t outer = pick(1, 3), reduce = pick(0, 3) == 0 ? pick(1, 3) : pick(1, 200), inner = pick(1, 200);
        const auto x = values<TIn>(static_cast<std::size_t>(outer * reduce * inner), rep % 5);
        const std::int32_t zp_in = sizeof(TIn) == 1 ? pick(-128, 127) : 0, zp_out = sizeof(TOut) == 1 ? pick(-20, 20) : 0;
        const double m = rep % 3 == 0 ? 1.0 : std::pow(10.0, -2.0 + 3.0 * pick(0, 100) / 100.0);
        const AverageRescale r(m, reduce, zp_in, zp_out, std::numeric_limits<TOut>::min(), std::numeric_limits<TOut>::max());
        std::vector<TOut> want(static_cast<std::size_t>(outer * inner)), got(want.size());
        reference::reduce_mean<Round>(x.data(), outer, reduce, inner, r, want.data());
        simd::reduce_mean<Arch, Round>(x.data(), outer, reduce, inner, r, got.data());
        REQUIRE(want == got);
        if (rep % 4 == 0) {  // GlobalAveragePool form
            std::vector<TOut> want2(static_cast<std::size_t>(outer * inner)), got2(want2.size());
            reference::global_avg_pool<Round>(x.data(), int(outer), 1, int(reduce), int(inner), r, want2.data());
            simd::global_avg_pool<Arch, Round>(x.data(), int(outer), 1, int(reduce), int(inner), r, got2.data());
            REQUIRE(want2 == got2);
        }
    }
}

template <class Arch, class Round, class T, class TOut>
void check_eltwise(int reps) {
    for (int rep = 0; rep < reps; ++rep) {
        const EltwiseOp op = rep % 3 == 0 ? EltwiseOp::add : rep % 3 == 1 ? EltwiseOp::sub : EltwiseOp::mul;
        const bool image = rep % 7 == 0;  // a per-channel operand of a few channels over a long image
        const std::int64_t b_count = image ? pick(2, 7) : pick(1, 120);
        const std::int64_t n = image ? b_count * pick(40, 700)
                                     : pick(0, 2) == 0 ? b_count : (pick(0, 3) == 0 ? pick(1, 400) : b_count * pick(1, 9));
        const std::int64_t bc = n % b_count == 0 ? b_count : (pick(0, 1) ? n : 1);
        const auto a = values<T>(static_cast<std::size_t>(n), rep % 5), b = values<T>(static_cast<std::size_t>(bc), (rep / 5) % 5);
        auto scale = [&] { return std::pow(10.0f, -3.0f + 2.5f * float(pick(0, 100)) / 100.0f); };
        const float sa = scale(), sb = pick(0, 4) == 0 ? sa : scale(), so = pick(0, 4) == 0 ? sa : scale();
        const std::int32_t zpa = sizeof(T) == 1 ? pick(-128, 127) : 0, zpb = sizeof(T) == 1 ? pick(-128, 127) : 0;
        const std::int32_t zpo = sizeof(TOut) == 1 ? pick(-128, 127) : 0;
        std::int32_t lo = std::numeric_limits<TOut>::min(), hi = std::numeric_limits<TOut>::max();
        if (rep % 4 == 0) lo = zpo;
        const EltwiseParams p = EltwiseParams::make(op, sa, zpa, sb, zpb, so, zpo, lo, hi, sizeof(T) * 8);
        std::vector<TOut> want(static_cast<std::size_t>(n)), got(want.size());
        reference::eltwise<Round>(a.data(), b.data(), n, bc, p, want.data());
        simd::eltwise<Arch, Round>(a.data(), b.data(), n, bc, p, got.data());
        for (std::size_t i = 0; i < want.size(); ++i)
            if (want[i] != got[i]) {
                INFO("op " << int(op) << ", n " << n << ", b_count " << bc << ", element " << i << ", a " << int(a[i]));
                REQUIRE(int(got[i]) == int(want[i]));
            }
    }
}

}  // namespace

TEST_CASE_TEMPLATE("simd max pooling equals the reference (int8, int16, padding, strides, odd channels)", Arch, BPUQ_POOL_ARCHS) {
    check_max_pool<Arch, std::int8_t>(150);
    check_max_pool<Arch, std::int16_t>(80);
}

TEST_CASE_TEMPLATE("simd average pooling equals the reference (count_include_pad, both roundings, ties)", Arch, BPUQ_POOL_ARCHS) {
    check_avg_pool<Arch, RoundHalfAwayFromZero, std::int8_t, std::int8_t>(150);
    check_avg_pool<Arch, RoundHalfToEven, std::int8_t, std::int8_t>(150);
    check_avg_pool<Arch, RoundHalfAwayFromZero, std::int16_t, std::int16_t>(60);
    check_avg_pool<Arch, RoundHalfToEven, std::int16_t, std::int8_t>(60);
}

TEST_CASE_TEMPLATE("simd reduce-mean / global average pooling equals the reference", Arch, BPUQ_POOL_ARCHS) {
    check_reduce_mean<Arch, RoundHalfAwayFromZero, std::int8_t, std::int8_t>(80);
    check_reduce_mean<Arch, RoundHalfToEven, std::int8_t, std::int8_t>(80);
    check_reduce_mean<Arch, RoundHalfAwayFromZero, std::int16_t, std::int16_t>(40);
}

TEST_CASE_TEMPLATE("simd eltwise add/sub/mul equals the reference (broadcast, saturation, both roundings)", Arch, BPUQ_POOL_ARCHS) {
    check_eltwise<Arch, RoundHalfAwayFromZero, std::int8_t, std::int8_t>(300);
    check_eltwise<Arch, RoundHalfToEven, std::int8_t, std::int8_t>(300);
    check_eltwise<Arch, RoundHalfAwayFromZero, std::int16_t, std::int16_t>(150);
    check_eltwise<Arch, RoundHalfToEven, std::int16_t, std::int8_t>(100);
}

TEST_CASE_TEMPLATE("simd int8 LUT equals the reference table lookup", Arch, BPUQ_POOL_ARCHS) {
    for (int rep = 0; rep < 20; ++rep) {
        const float s_in = 0.02f + 0.01f * float(rep), s_out = 1.0f / 128.0f;
        const std::int32_t zp_in = pick(-128, 127), zp_out = pick(-10, 10);
        const auto lut = LutInt8<std::int8_t>::build([](float x) { return std::tanh(x); }, s_in, zp_in, s_out, zp_out, -128, 127);
        const std::int64_t n = pick(0, 1) ? 256 + 64 * pick(0, 5) : pick(1, 700);
        std::vector<std::int8_t> x(static_cast<std::size_t>(n));
        for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<std::int8_t>(i < 256 ? int(i) - 128 : pick(-128, 127));
        std::vector<std::int8_t> want(x.size()), got(x.size());
        reference::apply_lut(x.data(), n, lut, want.data());
        simd::apply_lut<Arch>(x.data(), n, lut, got.data());
        REQUIRE(want == got);
        // int16 outputs run the reference (no vector path): still the same bits
        const auto lut16 = LutInt8<std::int16_t>::build([](float v) { return v * v; }, s_in, zp_in, 0.01f, 0, -32768, 32767);
        std::vector<std::int16_t> want16(x.size()), got16(x.size());
        reference::apply_lut(x.data(), n, lut16, want16.data());
        simd::apply_lut<Arch>(x.data(), n, lut16, got16.data());
        REQUIRE(want16 == got16);
    }
}

namespace {

template <class Arch, class Round, class T>
void check_resize(int reps) {
    const ResizeCoordinates modes[] = {ResizeCoordinates::half_pixel, ResizeCoordinates::asymmetric,
                                       ResizeCoordinates::align_corners, ResizeCoordinates::pytorch_half_pixel};
    for (int rep = 0; rep < reps; ++rep) {
        const int batch = pick(1, 2), h = pick(1, 7), w = pick(1, 7), c = pick(1, 70);
        // 2x upsampling (half-step weights: exact ties), odd factors and downsampling
        const int oh = rep % 3 == 0 ? 2 * h : pick(1, 15), ow = rep % 3 == 0 ? 2 * w : pick(1, 15);
        const ResizeCoordinates mode = modes[rep % 4];
        const ResizeAxis ys(h, oh, mode), xs(w, ow, mode);
        const auto x = values<T>(static_cast<std::size_t>(batch) * h * w * c, rep % 5);
        const std::int32_t zp = sizeof(T) == 1 ? pick(-128, 127) : (rep % 2 ? 0 : pick(-32768, 32767));
        std::vector<T> want(static_cast<std::size_t>(batch) * oh * ow * c), got(want.size());
        reference::resize_bilinear<Round>(x.data(), batch, h, w, c, zp, ys, xs, want.data());
        simd::resize_bilinear<Arch, Round>(x.data(), batch, h, w, c, zp, ys, xs, got.data());
        REQUIRE(want == got);
        reference::resize_nearest(x.data(), batch, h, w, c, ys, xs, want.data());
        simd::resize_nearest<Arch>(x.data(), batch, h, w, c, ys, xs, got.data());
        REQUIRE(want == got);
    }
}

}  // namespace

TEST_CASE_TEMPLATE("simd bilinear / nearest resize equals the reference (ties, extremes, int16 range, every coordinate mode)", Arch,
                   BPUQ_POOL_ARCHS) {
    check_resize<Arch, RoundHalfAwayFromZero, std::int8_t>(150);
    check_resize<Arch, RoundHalfToEven, std::int8_t>(150);
    check_resize<Arch, RoundHalfAwayFromZero, std::int16_t>(100);
    check_resize<Arch, RoundHalfToEven, std::int16_t>(100);
}

namespace {

template <class Arch, class Round, class TOut>
void check_lut16(int reps) {
    for (int rep = 0; rep < reps; ++rep) {
        const float s_in = 1.0f / 4096.0f * float(1 + rep % 7);
        const std::int32_t lo = std::numeric_limits<TOut>::min(), hi = std::numeric_limits<TOut>::max();
        const float s_out = sizeof(TOut) == 1 ? 1.0f / 128.0f : 1.0f / 32768.0f;
        // tanh and sigmoid stay in range; exp leaves it by far (steps beyond the int32 bound: the
        // reference formula runs); decreasing functions give negative steps, whose odd values at
        // r = 64 are negative ties (every input is visited when n = 65536)
        std::function<float(float)> f;
        switch (rep % 5) {
            case 0: f = [](float x) { return std::tanh(x); }; break;
            case 1: f = [](float x) { return 1.0f / (1.0f + std::exp(-x)); }; break;
            case 2: f = [](float x) { return std::exp(x); }; break;
            case 3: f = [](float x) { return -0.3f * x; }; break;
            default: f = [](float x) { return -std::tanh(x); }; break;
        }
        const auto lut = LutInt16<TOut>::template build<std::function<float(float)>&, Round>(f, s_in, s_out, 0, lo, hi);
        const std::int64_t n = rep % 2 == 0 ? 65536 : pick(1, 900);
        std::vector<std::int16_t> x(static_cast<std::size_t>(n));
        for (std::size_t i = 0; i < x.size(); ++i)
            x[i] = static_cast<std::int16_t>(n == 65536 ? int(i) - 32768 : rep % 7 == 1 ? -32768 : rep % 7 == 3 ? 32767 : pick(-32768, 32767));
        std::vector<TOut> want(x.size()), got(x.size());
        reference::apply_lut<Round>(x.data(), n, lut, want.data());
        simd::apply_lut<Arch, Round>(x.data(), n, lut, got.data());
        REQUIRE(want == got);
    }
}

template <class Arch, class Round, class T>
void check_concat(int reps) {
    for (int rep = 0; rep < reps; ++rep) {
        const int k = pick(1, 4);
        const std::int64_t outer = pick(1, 5);
        const float s_out = 0.05f;
        const std::int32_t zp_out = sizeof(T) == 1 ? pick(-20, 20) : 0;
        const std::int32_t qmin = std::numeric_limits<T>::min(), qmax = std::numeric_limits<T>::max();
        std::vector<std::vector<T>> data(static_cast<std::size_t>(k));
        std::vector<ConcatInput<T>> in;
        std::int64_t total = 0;
        for (int j = 0; j < k; ++j) {
            const std::int64_t slice = pick(1, 200);
            data[std::size_t(j)] = values<T>(static_cast<std::size_t>(outer * slice), rep % 5);
            // same grid (copied), a wider one (saturates), a power-of-two ratio (ties)
            const int kind = pick(0, 2);
            const float s_in = kind == 0 ? s_out : kind == 1 ? s_out * 3.7f : s_out * 0.5f;
            const std::int32_t zp_in = kind == 0 ? zp_out : (sizeof(T) == 1 ? pick(-128, 127) : 0);
            in.push_back(make_concat_input(data[std::size_t(j)].data(), slice, s_in, zp_in, s_out, zp_out));
            total += slice;
        }
        std::vector<T> want(static_cast<std::size_t>(outer * total)), got(want.size());
        reference::concat<Round>(in, outer, zp_out, qmin, qmax, want.data());
        simd::concat<Arch, Round>(in, outer, zp_out, qmin, qmax, got.data());
        REQUIRE(want == got);
    }
}

}  // namespace

TEST_CASE_TEMPLATE("simd int16 LUT equals the reference interpolation (both roundings, ties, out-of-range tables)", Arch,
                   BPUQ_POOL_ARCHS) {
    check_lut16<Arch, RoundHalfAwayFromZero, std::int16_t>(24);
    check_lut16<Arch, RoundHalfToEven, std::int16_t>(24);
    check_lut16<Arch, RoundHalfAwayFromZero, std::int8_t>(12);
}

TEST_CASE_TEMPLATE("simd concat equals the reference (copies, requantized inputs, saturation)", Arch, BPUQ_POOL_ARCHS) {
    check_concat<Arch, RoundHalfAwayFromZero, std::int8_t>(100);
    check_concat<Arch, RoundHalfToEven, std::int8_t>(100);
    check_concat<Arch, RoundHalfAwayFromZero, std::int16_t>(60);
}
