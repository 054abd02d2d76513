// Normative scalar pooling (NHWC): max, average (fixed-point reciprocal), global average, reduce-mean.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../params.hpp"

BPUQ_NAMESPACE_BEGIN

/// Window geometry of a 2-D pooling over NHWC activations.
struct Pool2dGeometry {
    int batch = 1, in_h = 1, in_w = 1, channels = 1;
    int kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1;
    int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
    int out_h() const noexcept { return (in_h + pad_top + pad_bottom - kernel_h) / stride_h + 1; }
    int out_w() const noexcept { return (in_w + pad_left + pad_right - kernel_w) / stride_w + 1; }
    void validate() const {
        BPUQ_CHECK(batch > 0 && in_h > 0 && in_w > 0 && channels > 0 && kernel_h > 0 && kernel_w > 0 && stride_h > 0 &&
                       stride_w > 0,
                   "kernels.pool", "pooling sizes, kernel and strides must be positive");
        BPUQ_CHECK(pad_top >= 0 && pad_left >= 0 && pad_bottom >= 0 && pad_right >= 0 && pad_top < kernel_h &&
                       pad_bottom < kernel_h && pad_left < kernel_w && pad_right < kernel_w,
                   "kernels.pool", "pooling padding must be in [0, kernel) so that no window is all padding");
        BPUQ_CHECK(out_h() > 0 && out_w() > 0, "kernels.pool", "the pooling window is larger than the padded input");
    }
};

/// The rescaling of an average: out = clamp(zp_out + round(sum(q - zp_in) * M / count)) with
/// M = s_in / s_out. M / count is one QuantizedMultiplier per possible count, so the division
/// by the count and the rescale are a single rounding.
struct AverageRescale {
    std::int32_t zp_in = 0, zp_out = 0, lo = -128, hi = 127;
    std::vector<QuantizedMultiplier> per_count;  // index = number of averaged elements

    AverageRescale() = default;
    AverageRescale(double real_multiplier, std::int64_t max_count, std::int32_t zp_in_, std::int32_t zp_out_,
                   std::int32_t lo_, std::int32_t hi_)
        : zp_in(zp_in_), zp_out(zp_out_), lo(lo_), hi(hi_) {
        BPUQ_CHECK(max_count > 0 && max_count <= (std::int64_t(1) << 24), "kernels.pool",
                   "average over " + std::to_string(max_count) + " elements is outside [1, 2^24]");
        per_count.resize(static_cast<std::size_t>(max_count) + 1);
        for (std::int64_t c = 1; c <= max_count; ++c)
            per_count[static_cast<std::size_t>(c)] = quantize_multiplier(real_multiplier / static_cast<double>(c));
    }
    template <class Round>
    std::int32_t apply(std::int64_t centered_sum, std::int64_t count) const noexcept {
        return requantize_value<Round>(centered_sum, per_count[static_cast<std::size_t>(count)], zp_out, lo, hi);
    }
};

namespace reference {

/// Max over the valid taps of each window (padding is ignored, not zero); same scale in and out.
template <class T>
inline void max_pool2d(const Pool2dGeometry& g, const T* input, T* output) {
    g.validate();
    const int oh = g.out_h(), ow = g.out_w(), c = g.channels;
    for (int n = 0; n < g.batch; ++n)
        for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox)
                for (int ch = 0; ch < c; ++ch) {
                    T best = std::numeric_limits<T>::min();
                    for (int ky = 0; ky < g.kernel_h; ++ky) {
                        const int iy = oy * g.stride_h - g.pad_top + ky;
                        if (iy < 0 || iy >= g.in_h) continue;
                        for (int kx = 0; kx < g.kernel_w; ++kx) {
                            const int ix = ox * g.stride_w - g.pad_left + kx;
                            if (ix < 0 || ix >= g.in_w) continue;
                            best = std::max(best, input[((std::int64_t(n) * g.in_h + iy) * g.in_w + ix) * c + ch]);
                        }
                    }
                    output[((std::int64_t(n) * oh + oy) * ow + ox) * c + ch] = best;
                }
}

/// Average pooling. count_include_pad: divide by the full window (padding counts as real 0,
/// i.e. the zero point); otherwise by the number of valid taps (ONNX's default).
template <class Round = RoundHalfAwayFromZero, class TIn, class TOut>
inline void avg_pool2d(const Pool2dGeometry& g, const TIn* input, bool count_include_pad, const AverageRescale& r,
                       TOut* output) {
    g.validate();
    BPUQ_CHECK(r.per_count.size() > static_cast<std::size_t>(g.kernel_h) * static_cast<std::size_t>(g.kernel_w),
               "kernels.pool", "the AverageRescale was built for fewer elements than the pooling window");
    const int oh = g.out_h(), ow = g.out_w(), c = g.channels;
    for (int n = 0; n < g.batch; ++n)
        for (int oy = 0; oy < oh; ++oy)
            for (int ox = 0; ox < ow; ++ox)
                for (int ch = 0; ch < c; ++ch) {
                    std::int64_t sum = 0, count = 0;
                    for (int ky = 0; ky < g.kernel_h; ++ky) {
                        const int iy = oy * g.stride_h - g.pad_top + ky;
                        if (iy < 0 || iy >= g.in_h) continue;
                        for (int kx = 0; kx < g.kernel_w; ++kx) {
                            const int ix = ox * g.stride_w - g.pad_left + kx;
                            if (ix < 0 || ix >= g.in_w) continue;
                            sum += input[((std::int64_t(n) * g.in_h + iy) * g.in_w + ix) * c + ch] - r.zp_in;
                            ++count;
                        }
                    }
                    if (count_include_pad) {  // windows clipped by the input end are not padding
                        const int y0 = oy * g.stride_h - g.pad_top, x0 = ox * g.stride_w - g.pad_left;
                        const int y1 = std::min(y0 + g.kernel_h, g.in_h + g.pad_bottom);
                        const int x1 = std::min(x0 + g.kernel_w, g.in_w + g.pad_right);
                        count = std::int64_t(y1 - y0) * (x1 - x0);
                    }
                    output[((std::int64_t(n) * oh + oy) * ow + ox) * c + ch] =
                        static_cast<TOut>(r.template apply<Round>(sum, count));
                }
}

/// Mean over the middle axis of a tensor viewed as [outer][reduce][inner] (ReduceMean over
/// contiguous axes; GlobalAveragePool of NHWC is outer = N, reduce = H*W, inner = C).
template <class Round = RoundHalfAwayFromZero, class TIn, class TOut>
inline void reduce_mean(const TIn* input, std::int64_t outer, std::int64_t reduce, std::int64_t inner,
                        const AverageRescale& r, TOut* output) {
    BPUQ_CHECK(outer > 0 && reduce > 0 && inner > 0, "kernels.reduce", "reduce_mean sizes must be positive");
    BPUQ_CHECK(static_cast<std::int64_t>(r.per_count.size()) > reduce, "kernels.reduce",
               "the AverageRescale was built for fewer than " + std::to_string(reduce) + " elements");
    for (std::int64_t o = 0; o < outer; ++o)
        for (std::int64_t i = 0; i < inner; ++i) {
            std::int64_t sum = 0;
            for (std::int64_t k = 0; k < reduce; ++k) sum += input[(o * reduce + k) * inner + i] - r.zp_in;
            output[o * inner + i] = static_cast<TOut>(r.template apply<Round>(sum, reduce));
        }
}

/// GlobalAveragePool over NHWC: [N][H][W][C] -> [N][C].
template <class Round = RoundHalfAwayFromZero, class TIn, class TOut>
inline void global_avg_pool(const TIn* input, int batch, int h, int w, int c, const AverageRescale& r, TOut* output) {
    reduce_mean<Round>(input, batch, std::int64_t(h) * w, c, r, output);
}

}  // namespace reference
BPUQ_NAMESPACE_END
