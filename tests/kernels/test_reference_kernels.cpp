// Reference integer kernels against float computations on the dequantized values.
//
// Each integer result must be within the bound its arithmetic implies of the float result
// quantized with the same output parameters: one step where the only differences are the
// 2^-31 relative error of the fixed-point multiplier and tie placement (conv, gemm, pooling,
// eltwise, concat, bilinear resize), exact where no rescale happens (max pool, nearest resize,
// int8 LUT), a few steps for interpolated int16 tables.
#include <doctest/doctest.h>

#include <bpuq/kernels.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "test_support.hpp"

using namespace bpuq;


namespace {

template <class T>
std::vector<T> random_ints(std::size_t n, int lo, int hi) {
    std::uniform_int_distribution<int> d(lo, hi);
    std::vector<T> v(n);
    for (auto& x : v) x = static_cast<T>(d(bpuq_test::rng()));
    return v;
}

std::int32_t float_to_q(double y, float s_out, std::int32_t zp_out, std::int32_t lo, std::int32_t hi) {
    const double v = std::round(y / s_out) + zp_out;
    return static_cast<std::int32_t>(std::min<double>(std::max<double>(v, lo), hi));
}

/// Counts elements off by one and fails on anything further.
struct Agreement {
    std::int64_t total = 0, exact = 0;
    void add(std::int64_t got, std::int64_t want, std::int64_t tolerance = 1) {
        ++total;
        if (got == want) ++exact;
        REQUIRE(std::llabs(got - want) <= tolerance);
    }
    double exact_fraction() const { return total ? double(exact) / double(total) : 1.0; }
};

template <class TIn, class TW, class TOut>
void check_conv_against_float(const Conv2dGeometry& g, bool relu) {
    auto& rng = bpuq_test::rng();
    constexpr int in_bits = sizeof(TIn) * 8;
    const std::int32_t in_qmin = in_bits == 8 ? -128 : -32768, in_qmax = in_bits == 8 ? 127 : 32767;
    const std::int32_t wmax = sizeof(TW) == 1 ? 127 : 32767;
    const std::int32_t zp_in = in_bits == 8 ? std::uniform_int_distribution<int>(-20, 20)(rng) : 0;
    const auto input = random_ints<TIn>(static_cast<std::size_t>(g.input_size()), in_qmin, in_qmax);
    const auto weights = random_ints<TW>(static_cast<std::size_t>(g.weight_size()), -wmax, wmax);
    const float s_in = in_bits == 8 ? 0.02f : 0.02f / 256.0f;
    std::vector<float> s_w(static_cast<std::size_t>(g.out_c));
    std::uniform_real_distribution<float> sw(0.5e-3f, 4e-3f);
    for (auto& s : s_w) s = sizeof(TW) == 1 ? sw(rng) : sw(rng) / 256.0f;
    std::vector<std::int32_t> bias = random_ints<std::int32_t>(s_w.size(), -5000, 5000);
    // output scale so that the outputs span about the int8 range
    const double typical = std::sqrt(double(g.kernel_h * g.kernel_w * g.in_c_per_group())) * 70.0 * 70.0 * s_in * 2e-3;
    const float s_out = sizeof(TOut) == 1 ? float(typical / 40.0) : sizeof(TOut) == 2 ? float(typical / 10000.0) : float(typical / 1e5);
    const std::int32_t zp_out = sizeof(TOut) == 1 ? 3 : 0;
    std::vector<QuantizedMultiplier> mult;
    for (float s : s_w) mult.push_back(quantize_multiplier(double(s_in) * s / s_out));
    Requantization rq;
    rq.bias = bias.data();
    rq.multipliers = mult.data();
    rq.zero_point = zp_out;
    const std::int32_t out_min = sizeof(TOut) == 1 ? -128 : sizeof(TOut) == 2 ? -32768 : -2000000000;
    const std::int32_t out_max = sizeof(TOut) == 1 ? 127 : sizeof(TOut) == 2 ? 32767 : 2000000000;
    fused_activation_bounds(relu ? FusedActivation::relu : FusedActivation::none, s_out, zp_out, out_min, out_max, rq.lo, rq.hi);
    std::vector<TOut> out(static_cast<std::size_t>(g.output_size()));
    reference::conv2d(g, input.data(), zp_in, weights.data(), rq, out.data());

    Agreement agree;
    const int oh = g.out_h(), ow = g.out_w(), cig = g.in_c_per_group(), cog = g.out_c_per_group();
    for (int n = 0; n < g.batch; ++n)
        for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox)
                for (int co = 0; co < g.out_c; ++co) {
                    double y = double(bias[co]) * s_in * s_w[co];
                    for (int ky = 0; ky < g.kernel_h; ++ky)
                        for (int kx = 0; kx < g.kernel_w; ++kx) {
                            const int iy = oy * g.stride_h - g.pad_top + ky * g.dilation_h;
                            const int ix = ox * g.stride_w - g.pad_left + kx * g.dilation_w;
                            for (int ci = 0; ci < cig; ++ci) {
                                // padding is the real value 0
                                const double x = (iy < 0 || iy >= g.in_h || ix < 0 || ix >= g.in_w)
                                                     ? 0.0
                                                     : double(s_in) * (input[((std::size_t(n) * g.in_h + iy) * g.in_w + ix) * g.in_c +
                                                                             (co / cog) * cig + ci] - zp_in);
                                y += x * double(s_w[co]) * weights[((std::size_t(co) * g.kernel_h + ky) * g.kernel_w + kx) * cig + ci];
                            }
                        }
                    agree.add(out[((std::size_t(n) * oh + oy) * ow + ox) * g.out_c + co], float_to_q(y, s_out, zp_out, rq.lo, rq.hi));
                }
    INFO(g.to_string());
    CHECK(agree.exact_fraction() > 0.99);
}

}  // namespace

TEST_CASE("reference conv2d agrees with float convolution: groups, depthwise, stride, dilation, padding") {
    std::vector<Conv2dGeometry> geoms;
    auto add = [&](int h, int w, int ci, int co, int k, int s, int d, int p, int groups) {
        Conv2dGeometry g;
        g.in_h = h;
        g.in_w = w;
        g.in_c = ci;
        g.out_c = co;
        g.kernel_h = g.kernel_w = k;
        g.stride_h = g.stride_w = s;
        g.dilation_h = g.dilation_w = d;
        g.pad_top = g.pad_left = p;
        g.pad_bottom = g.pad_right = p > 0 ? p - (s > 1 ? 1 : 0) : 0;  // asymmetric when strided
        g.groups = groups;
        geoms.push_back(g);
    };
    add(7, 9, 5, 3, 3, 1, 1, 1, 1);
    add(8, 8, 6, 4, 3, 2, 1, 1, 2);
    add(9, 7, 7, 7, 3, 1, 1, 1, 7);    // depthwise
    add(11, 10, 4, 8, 5, 2, 1, 2, 4);  // grouped 5x5 stride 2
    add(10, 10, 3, 5, 3, 1, 2, 2, 1);  // dilation 2
    add(5, 6, 16, 9, 1, 1, 1, 0, 1);   // 1x1
    add(12, 12, 3, 4, 7, 2, 1, 3, 1);  // 7x7 stem-like
    geoms[0].batch = 2;
    for (const auto& g : geoms) {
        check_conv_against_float<std::int8_t, std::int8_t, std::int8_t>(g, false);
        check_conv_against_float<std::int8_t, std::int8_t, std::int8_t>(g, true);
        check_conv_against_float<std::int8_t, std::int8_t, std::int16_t>(g, false);
        check_conv_against_float<std::int8_t, std::int8_t, std::int32_t>(g, false);
        check_conv_against_float<std::int16_t, std::int8_t, std::int16_t>(g, false);
        check_conv_against_float<std::int16_t, std::int16_t, std::int8_t>(g, true);
    }
}

TEST_CASE("NCHW <-> NHWC copies move every element to its place (several pixel blocks, odd sizes)") {
    const int n = 2, c = 5, h = 3, w = 50;  // 150 pixels: two full blocks of 64 and a partial one
    std::vector<std::int16_t> nchw(static_cast<std::size_t>(n * c * h * w)), nhwc(nchw.size()), back(nchw.size());
    for (std::size_t i = 0; i < nchw.size(); ++i) nchw[i] = static_cast<std::int16_t>(i * 7 % 30011);
    nchw_to_nhwc(nchw.data(), nhwc.data(), n, c, h, w);
    for (int b = 0; b < n; ++b)
        for (int ch = 0; ch < c; ++ch)
            for (int y = 0; y < h; ++y)
                for (int x = 0; x < w; ++x)
                    REQUIRE(nhwc[static_cast<std::size_t>(((b * h + y) * w + x) * c + ch)] ==
                            nchw[static_cast<std::size_t>(((b * c + ch) * h + y) * w + x)]);
    nhwc_to_nchw(nhwc.data(), back.data(), n, c, h, w);
    CHECK(back == nchw);
}

TEST_CASE("reference conv2d rejects impossible geometries with kernels.conv") {
    Conv2dGeometry g;
    g.in_h = g.in_w = 4;
    g.in_c = 6;
    g.out_c = 4;
    g.groups = 4;  // does not divide in_c
    std::vector<std::int8_t> x(96), w(24), y(64);
    QuantizedMultiplier m = quantize_multiplier(0.5);
    Requantization rq;
    rq.multipliers = &m;
    rq.per_channel = false;
    CHECK_THROWS_WITH_AS(reference::conv2d(g, x.data(), 0, w.data(), rq, y.data()), doctest::Contains("[bpuq.kernels.conv]"), Error);
    g.groups = 1;
    g.kernel_h = 9;
    CHECK_THROWS_WITH_AS(reference::conv2d(g, x.data(), 0, w.data(), rq, y.data()), doctest::Contains("larger than the padded"), Error);
}

TEST_CASE("reference gemm agrees with float matmul, with and without a second zero point") {
    auto& rng = bpuq_test::rng();
    for (int rep = 0; rep < 6; ++rep) {
        GemmGeometry g;
        g.m = std::uniform_int_distribution<int>(1, 9)(rng);
        g.n = std::uniform_int_distribution<int>(1, 17)(rng);
        g.k = std::uniform_int_distribution<int>(1, 300)(rng);
        const auto a = random_ints<std::int8_t>(std::size_t(g.m) * g.k, -128, 127);
        const auto b = random_ints<std::int8_t>(std::size_t(g.n) * g.k, -127, 127);
        const std::int32_t zp_a = rep - 3, zp_b = rep % 2 ? 7 : 0;
        const float s_a = 0.05f, s_b = 0.01f, s_out = 0.05f * 0.01f * std::sqrt(float(g.k)) * 60.0f;
        const QuantizedMultiplier m = quantize_multiplier(double(s_a) * s_b / s_out);
        Requantization rq;
        rq.multipliers = &m;
        rq.per_channel = false;
        rq.zero_point = -2;
        std::vector<std::int8_t> c(std::size_t(g.m) * g.n);
        reference::gemm(g, a.data(), zp_a, b.data(), zp_b, rq, c.data());
        Agreement agree;
        for (int i = 0; i < g.m; ++i)
            for (int j = 0; j < g.n; ++j) {
                double y = 0;
                for (int p = 0; p < g.k; ++p)
                    y += double(s_a) * (a[std::size_t(i) * g.k + p] - zp_a) * double(s_b) * (b[std::size_t(j) * g.k + p] - zp_b);
                agree.add(c[std::size_t(i) * g.n + j], float_to_q(y, s_out, -2, -128, 127));
            }
        CHECK(agree.exact_fraction() > 0.98);
    }
}

TEST_CASE("fused activation bounds fold ReLU, ReLU6 and Clip into the saturation range") {
    std::int32_t lo, hi;
    fused_activation_bounds(FusedActivation::relu, 0.1f, -5, -128, 127, lo, hi);
    CHECK(lo == -5);
    CHECK(hi == 127);
    fused_activation_bounds(FusedActivation::relu6, 0.1f, -5, -128, 127, lo, hi);
    CHECK(lo == -5);
    CHECK(hi == 55);
    fused_activation_bounds(FusedActivation::clip, 0.1f, 0, -128, 127, lo, hi, -1.0f, 2.0f);
    CHECK(lo == -10);
    CHECK(hi == 20);
    CHECK_THROWS_AS(fused_activation_bounds(FusedActivation::clip, 0.1f, 0, -128, 127, lo, hi, 2.0f, 1.0f), Error);
}

TEST_CASE("reference pooling: max is exact, averages agree with the float mean") {
    Pool2dGeometry g;
    g.in_h = 9;
    g.in_w = 8;
    g.channels = 5;
    g.kernel_h = g.kernel_w = 3;
    g.stride_h = g.stride_w = 2;
    g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = 1;
    const auto x = random_ints<std::int8_t>(std::size_t(9 * 8 * 5), -128, 127);
    std::vector<std::int8_t> y(std::size_t(g.out_h()) * g.out_w() * 5), a(y.size());
    reference::max_pool2d(g, x.data(), y.data());
    const float s_in = 0.1f, s_out = 0.07f;
    const std::int32_t zp_in = 4, zp_out = -1;
    AverageRescale r(double(s_in) / s_out, 9, zp_in, zp_out, -128, 127);
    for (bool include_pad : {false, true}) {
        reference::avg_pool2d(g, x.data(), include_pad, r, a.data());
        Agreement agree;
        for (int oy = 0; oy < g.out_h(); ++oy)
            for (int ox = 0; ox < g.out_w(); ++ox)
                for (int c = 0; c < 5; ++c) {
                    int best = -1000, count = 0;
                    double sum = 0;
                    for (int ky = 0; ky < 3; ++ky)
                        for (int kx = 0; kx < 3; ++kx) {
                            const int iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
                            if (iy < 0 || ix < 0 || iy >= 9 || ix >= 8) {
                                if (include_pad && iy < 10 && ix < 9) ++count;  // padding counts, beyond the pads not
                                continue;
                            }
                            const int q = x[(std::size_t(iy) * 8 + ix) * 5 + c];
                            best = std::max(best, q);
                            sum += s_in * (q - zp_in);
                            ++count;
                        }
                    const std::size_t o = (std::size_t(oy) * g.out_w() + ox) * 5 + c;
                    CHECK(int(y[o]) == best);
                    agree.add(a[o], float_to_q(sum / count, s_out, zp_out, -128, 127));
                }
        CHECK(agree.exact_fraction() > 0.95);
    }
    // global average pool of int16
    const auto x16 = random_ints<std::int16_t>(2 * 7 * 7 * 3, -32768, 32767);
    std::vector<std::int16_t> g16(6);
    AverageRescale r16(1.0, 49, 0, 0, -32768, 32767);
    reference::global_avg_pool(x16.data(), 2, 7, 7, 3, r16, g16.data());
    for (int n = 0; n < 2; ++n)
        for (int c = 0; c < 3; ++c) {
            double s = 0;
            for (int i = 0; i < 49; ++i) s += x16[(std::size_t(n) * 49 + i) * 3 + c];
            CHECK(std::abs(int(g16[std::size_t(n) * 3 + c]) - int(std::lround(s / 49))) <= 1);
        }
}

TEST_CASE("reference eltwise add/sub/mul of differently scaled operands agree with float") {
    const auto a = random_ints<std::int8_t>(4000, -128, 127);
    const auto b = random_ints<std::int8_t>(4000, -128, 127);
    const float sa = 0.031f, sb = 0.0127f;
    const std::int32_t za = 5, zb = -9;
    for (EltwiseOp op : {EltwiseOp::add, EltwiseOp::sub, EltwiseOp::mul}) {
        const float s_out = op == EltwiseOp::mul ? 0.4f * 0.16f / 100.0f : 0.04f;
        const auto p = EltwiseParams::make(op, sa, za, sb, zb, s_out, 1, -128, 127);
        std::vector<std::int8_t> y(4000);
        reference::eltwise(a.data(), b.data(), 4000, 4000, p, y.data());
        Agreement agree;
        for (std::size_t i = 0; i < 4000; ++i) {
            const double fa = double(sa) * (a[i] - za), fb = double(sb) * (b[i] - zb);
            const double f = op == EltwiseOp::add ? fa + fb : op == EltwiseOp::sub ? fa - fb : fa * fb;
            agree.add(y[i], float_to_q(f, s_out, 1, -128, 127));
        }
        CHECK(agree.exact_fraction() > 0.99);
    }
    // int16 add with a per-channel (innermost-broadcast) operand
    const auto a16 = random_ints<std::int16_t>(600, -32768, 32767);
    const auto b16 = random_ints<std::int16_t>(6, -32768, 32767);
    const auto p16 = EltwiseParams::make(EltwiseOp::add, 1.13e-4f, 0, 3.07e-4f, 0, 4.21e-4f, 0, -32768, 32767, 16);
    std::vector<std::int16_t> y16(600);
    reference::eltwise(a16.data(), b16.data(), 600, 6, p16, y16.data());
    Agreement agree;
    for (std::size_t i = 0; i < 600; ++i)
        agree.add(y16[i], float_to_q(double(1.13e-4f) * a16[i] + double(3.07e-4f) * b16[i % 6], 4.21e-4f, 0, -32768, 32767));
    CHECK(agree.exact_fraction() > 0.98);
}

TEST_CASE("reference concat copies or requantizes each input into the output parameters") {
    const auto a = random_ints<std::int8_t>(2 * 3 * 4, -128, 127);  // outer 2, slice 12
    const auto b = random_ints<std::int8_t>(2 * 5 * 4, -128, 127);  // outer 2, slice 20
    const float s_out = 0.05f;
    std::vector<ConcatInput<std::int8_t>> ins{make_concat_input(a.data(), 12, 0.05f, 2, s_out, 2),
                                              make_concat_input(b.data(), 20, 0.03f, -7, s_out, 2)};
    CHECK(ins[0].identity);
    CHECK(!ins[1].identity);
    std::vector<std::int8_t> y(64);
    reference::concat(ins, 2, 2, -128, 127, y.data());
    for (int o = 0; o < 2; ++o) {
        for (int i = 0; i < 12; ++i) CHECK(y[std::size_t(o) * 32 + i] == a[std::size_t(o) * 12 + i]);
        for (int i = 0; i < 20; ++i)
            CHECK(std::abs(int(y[std::size_t(o) * 32 + 12 + i]) -
                           float_to_q(0.03 * (b[std::size_t(o) * 20 + i] + 7), s_out, 2, -128, 127)) <= 1);
    }
}

TEST_CASE("reference resize: nearest picks ONNX's source pixel, bilinear agrees with float") {
    const int h = 5, w = 6, c = 3, oh = 9, ow = 13;
    const auto x = random_ints<std::int8_t>(std::size_t(h) * w * c, -128, 127);
    for (ResizeCoordinates mode : {ResizeCoordinates::half_pixel, ResizeCoordinates::asymmetric, ResizeCoordinates::align_corners}) {
        const ResizeAxis ys(h, oh, mode), xs(w, ow, mode);
        std::vector<std::int8_t> yn(std::size_t(oh) * ow * c), yb(yn.size());
        reference::resize_nearest(x.data(), 1, h, w, c, ys, xs, yn.data());
        reference::resize_bilinear(x.data(), 1, h, w, c, 3, ys, xs, yb.data());
        Agreement agree;
        for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox)
                for (int ch = 0; ch < c; ++ch) {
                    const double sy = std::min(std::max(detail::resize_source(oy, h, oh, mode), 0.0), double(h - 1));
                    const double sx = std::min(std::max(detail::resize_source(ox, w, ow, mode), 0.0), double(w - 1));
                    const int y0 = int(sy), x0 = int(sx), y1 = std::min(y0 + 1, h - 1), x1 = std::min(x0 + 1, w - 1);
                    const double fy = sy - y0, fx = sx - x0;
                    auto at = [&](int yy, int xx) { return double(x[(std::size_t(yy) * w + xx) * c + ch]) - 3; };
                    const double v = (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x1)) + fy * ((1 - fx) * at(y1, x0) + fx * at(y1, x1));
                    agree.add(yb[(std::size_t(oy) * ow + ox) * c + ch], std::lround(v) + 3);
                    // nearest: round_prefer_floor of the (unclamped) source coordinate
                    const double src_y = detail::resize_source(oy, h, oh, mode);
                    const double src_x = detail::resize_source(ox, w, ow, mode);
                    const int ny = std::min(std::max(int(std::ceil(src_y - 0.5)), 0), h - 1);
                    const int nx = std::min(std::max(int(std::ceil(src_x - 0.5)), 0), w - 1);
                    CHECK(yn[(std::size_t(oy) * ow + ox) * c + ch] == x[(std::size_t(ny) * w + nx) * c + ch]);
                }
        CHECK(agree.exact_fraction() > 0.9);  // 11-bit weights move near-ties by up to ~0.13 step
    }
}

TEST_CASE("reference LUT activations: int8 tables are exact, int16 interpolation is within a few steps") {
    auto sigmoid = [](float v) { return 1.0f / (1.0f + std::exp(-v)); };
    const auto lut = LutInt8<std::int8_t>::build(sigmoid, 0.05f, 3, 1.0f / 256.0f, -128, -128, 127);
    std::vector<std::int8_t> all(256), y(256);
    for (int i = 0; i < 256; ++i) all[std::size_t(i)] = static_cast<std::int8_t>(i - 128);
    reference::apply_lut(all.data(), 256, lut, y.data());
    for (int i = 0; i < 256; ++i)
        CHECK(int(y[std::size_t(i)]) == quantize_value(sigmoid(0.05f * float(i - 128 - 3)), 1.0f / 256.0f, -128, -128, 127));

    auto tanh_fn = [](float v) { return std::tanh(v); };
    const float s_in = 6.0f / 32767.0f, s_out = 1.0f / 32767.0f;
    const auto lut16 = LutInt16<std::int16_t>::build(tanh_fn, s_in, s_out, 0, -32768, 32767);
    std::vector<std::int16_t> x16(65536), y16(65536);
    for (int i = 0; i < 65536; ++i) x16[std::size_t(i)] = static_cast<std::int16_t>(i - 32768);
    reference::apply_lut(x16.data(), 65536, lut16, y16.data());
    int worst = 0;
    for (int i = 0; i < 65536; ++i)
        worst = std::max(worst, std::abs(int(y16[std::size_t(i)]) - float_to_q(std::tanh(double(s_in) * (i - 32768)), s_out, 0, -32768, 32767)));
    // linear interpolation over 128 steps of tanh: max |f''| h^2 / 8 = 0.77 * (128 s_in)^2 / 8 / s_out ~ 18 steps
    CHECK(worst <= 20);
    CHECK(worst >= 1);  // the test can see interpolation error at all
}

TEST_CASE("reference softmax (float fallback) agrees with float softmax") {
    const auto x = random_ints<std::int8_t>(7 * 10, -128, 127);
    std::vector<std::int8_t> y(70);
    reference::softmax_float(x.data(), 7, 10, 0.1f, 5, 1.0f / 256.0f, -128, -128, 127, y.data());
    for (int r = 0; r < 7; ++r) {
        double mx = -1e9, sum = 0;
        for (int j = 0; j < 10; ++j) mx = std::max(mx, 0.1 * (x[std::size_t(r) * 10 + j] - 5));
        for (int j = 0; j < 10; ++j) sum += std::exp(0.1 * (x[std::size_t(r) * 10 + j] - 5) - mx);
        for (int j = 0; j < 10; ++j)
            CHECK(std::abs(int(y[std::size_t(r) * 10 + j]) -
                           float_to_q(std::exp(0.1 * (x[std::size_t(r) * 10 + j] - 5) - mx) / sum, 1.0f / 256.0f, -128, -128, 127)) <= 1);
    }
}
