// Normative scalar 2-D convolution (NHWC activations, OHWI weights), grouped/depthwise/dilated.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../params.hpp"

BPUQ_NAMESPACE_BEGIN
namespace reference {

/// out[n, oy, ox, co] = requantize(sum over (ky, kx, ci of co's group) of
///     (in[n, oy*S - P + ky*D, ox*S - P + kx*D, ci] - zp_in) * w[co, ky, kx, ci], co)
/// Taps in the padding contribute (zp_in - zp_in) * w = 0: padding holds the input zero point.
/// Weights are symmetric (zero point 0). The accumulator is int32 for int8 x int8 and int64
/// otherwise; the sum is exact (no intermediate saturation).
template <class Round = RoundHalfAwayFromZero, class TIn, class TW, class TOut>
inline void conv2d(const Conv2dGeometry& g, const TIn* input, std::int32_t input_zero_point, const TW* weights,
                   const Requantization& rq, TOut* output) {
    static_assert(is_activation_type<TIn> && is_activation_type<TW>, "bpuq: conv2d takes int8/int16 inputs and weights");
    static_assert(is_output_type<TOut>, "bpuq: conv2d writes int8, int16 or int32");
    g.validate();
    using Acc = accumulator_t<TIn, TW>;
    const int oh = g.out_h(), ow = g.out_w(), cig = g.in_c_per_group(), cog = g.out_c_per_group();
    for (int n = 0; n < g.batch; ++n)
        for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox)
                for (int co = 0; co < g.out_c; ++co) {
                    const int group = co / cog;
                    Acc acc = 0;
                    for (int ky = 0; ky < g.kernel_h; ++ky) {
                        const int iy = oy * g.stride_h - g.pad_top + ky * g.dilation_h;
                        if (iy < 0 || iy >= g.in_h) continue;
                        for (int kx = 0; kx < g.kernel_w; ++kx) {
                            const int ix = ox * g.stride_w - g.pad_left + kx * g.dilation_w;
                            if (ix < 0 || ix >= g.in_w) continue;
                            const TIn* in = input + ((std::int64_t(n) * g.in_h + iy) * g.in_w + ix) * g.in_c + group * cig;
                            const TW* w = weights + ((std::int64_t(co) * g.kernel_h + ky) * g.kernel_w + kx) * cig;
                            for (int ci = 0; ci < cig; ++ci)
                                acc += static_cast<Acc>(static_cast<std::int32_t>(in[ci]) - input_zero_point) *
                                       static_cast<Acc>(w[ci]);
                        }
                    }
                    output[((std::int64_t(n) * oh + oy) * ow + ox) * g.out_c + co] =
                        requantize_output<TOut, Round>(acc, rq, static_cast<std::size_t>(co));
                }
}

}  // namespace reference

// ---- layout helpers for the callers (ONNX is NCHW / OIHW) ----

/// NCHW -> NHWC copy of one activation tensor.
template <class T>
inline void nchw_to_nhwc(const T* in, T* out, int n, int c, int h, int w) noexcept {
    // blocks of 64 pixels: reads stay sequential per channel and writes within a few cache lines
    const std::int64_t hw = std::int64_t(h) * w;
    for (int b = 0; b < n; ++b) {
        const T* src = in + std::int64_t(b) * c * hw;
        T* dst = out + std::int64_t(b) * c * hw;
        for (std::int64_t p0 = 0; p0 < hw; p0 += 64) {
            const std::int64_t p1 = std::min(hw, p0 + 64);
            for (int ch = 0; ch < c; ++ch)
                for (std::int64_t p = p0; p < p1; ++p) dst[p * c + ch] = src[ch * hw + p];
        }
    }
}

/// NHWC -> NCHW copy of one activation tensor.
template <class T>
inline void nhwc_to_nchw(const T* in, T* out, int n, int c, int h, int w) noexcept {
    const std::int64_t hw = std::int64_t(h) * w;
    for (int b = 0; b < n; ++b) {
        const T* src = in + std::int64_t(b) * c * hw;
        T* dst = out + std::int64_t(b) * c * hw;
        for (std::int64_t p0 = 0; p0 < hw; p0 += 64) {
            const std::int64_t p1 = std::min(hw, p0 + 64);
            for (int ch = 0; ch < c; ++ch)
                for (std::int64_t p = p0; p < p1; ++p) dst[ch * hw + p] = src[p * c + ch];
        }
    }
}

/// ONNX Conv weights OIHW ([C_out][C_in/groups][K_h][K_w]) -> OHWI.
template <class T>
inline void oihw_to_ohwi(const T* in, T* out, int co, int ci, int kh, int kw) noexcept {
    for (int o = 0; o < co; ++o)
        for (int i = 0; i < ci; ++i)
            for (int y = 0; y < kh; ++y)
                for (int x = 0; x < kw; ++x)
                    out[((std::int64_t(o) * kh + y) * kw + x) * ci + i] = in[((std::int64_t(o) * ci + i) * kh + y) * kw + x];
}

BPUQ_NAMESPACE_END
