// Normative scalar Concat (with requantization of inputs) and nearest / bilinear Resize (NHWC).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../params.hpp"

BPUQ_NAMESPACE_BEGIN

/// One input of a Concat: its data, its extent along the axis times the inner size, and how
/// it maps onto the output's parameters (identity when scale and zero point are equal).
template <class T>
struct ConcatInput {
    const T* data = nullptr;
    std::int64_t slice = 0;  // elements per outer index: dim(axis) * inner
    std::int32_t zero_point = 0;
    QuantizedMultiplier multiplier;  // s_in / s_out
    bool identity = true;
};

/// Builds a ConcatInput from the input and output parameters (per-tensor).
template <class T>
inline ConcatInput<T> make_concat_input(const T* data, std::int64_t slice, float s_in, std::int32_t zp_in, float s_out,
                                        std::int32_t zp_out) {
    ConcatInput<T> in;
    in.data = data;
    in.slice = slice;
    in.zero_point = zp_in;
    in.identity = s_in == s_out && zp_in == zp_out;
    in.multiplier = rescale_multiplier(s_in, s_out);
    return in;
}

/// Coordinate transformation of ONNX Resize (the source coordinate of an output index).
enum class ResizeCoordinates { half_pixel, asymmetric, align_corners, pytorch_half_pixel };

/// ONNX Resize's nearest_mode: how a fractional source coordinate picks its pixel.
enum class ResizeNearest { round_prefer_floor, round_prefer_ceil, floor, ceil };

namespace detail {
/// Source coordinate of output index `o` for ONNX's `scale` (output/input as the model states
/// it, e.g. a float32 value), exactly as the float executor computes it (double precision).
inline double resize_source_coordinate(int o, int in_size, double scale, ResizeCoordinates mode) noexcept {
    const double out_w = scale * double(in_size);
    switch (mode) {
        case ResizeCoordinates::asymmetric: return o / scale;
        case ResizeCoordinates::align_corners: return out_w == 1 ? 0.0 : o * double(in_size - 1) / (out_w - 1);
        case ResizeCoordinates::pytorch_half_pixel: return out_w == 1 ? -0.5 : (o + 0.5) / scale - 0.5;
        case ResizeCoordinates::half_pixel:
        default: return (o + 0.5) / scale - 0.5;
    }
}
/// The same with the scale taken as out_size / in_size.
inline double resize_source(int o, int in_size, int out_size, ResizeCoordinates mode) noexcept {
    return resize_source_coordinate(o, in_size, double(out_size) / double(in_size), mode);
}
}  // namespace detail

/// Fractional bits of the bilinear weights: each axis weight is an integer in [0, 2^11].
constexpr int kResizeWeightBits = 11;

/// Per-axis source indices and weights of a resize, computed once per shape.
struct ResizeAxis {
    std::vector<int> i0, i1;           // source taps (clamped to the input)
    std::vector<std::int32_t> w1;      // weight of i1 in [0, 2^11]; i0 gets 2^11 - w1
    std::vector<int> nearest;          // nearest-neighbour source index

    /// `scale` is the model's output/input scale of this axis (0: out_size / in_size).
    ResizeAxis(int in_size, int out_size, ResizeCoordinates mode, ResizeNearest nearest_mode = ResizeNearest::round_prefer_floor,
               double scale = 0.0) {
        BPUQ_CHECK(in_size > 0 && out_size > 0, "kernels.resize",
                   "resize sizes must be positive, got " + std::to_string(in_size) + " -> " + std::to_string(out_size));
        for (int o = 0; o < out_size; ++o) {
            const double src = scale > 0.0 ? detail::resize_source_coordinate(o, in_size, scale, mode)
                                           : detail::resize_source(o, in_size, out_size, mode);
            int nn = 0;
            switch (nearest_mode) {
                case ResizeNearest::round_prefer_floor: nn = static_cast<int>(std::ceil(src - 0.5)); break;  // ties down
                case ResizeNearest::round_prefer_ceil: nn = static_cast<int>(std::floor(src + 0.5)); break;  // ties up
                case ResizeNearest::floor: nn = static_cast<int>(std::floor(src)); break;
                case ResizeNearest::ceil: nn = static_cast<int>(std::ceil(src)); break;
            }
            nn = std::min(std::max(nn, 0), in_size - 1);
            nearest.push_back(nn);
            const double s = std::min(std::max(src, 0.0), double(in_size - 1));
            const int a = static_cast<int>(std::floor(s));
            const int b = std::min(a + 1, in_size - 1);
            i0.push_back(a);
            i1.push_back(b);
            w1.push_back(static_cast<std::int32_t>(std::lround((s - a) * (1 << kResizeWeightBits))));
        }
    }
};

namespace reference {

/// Concat along an axis of a tensor viewed as [outer][axis * inner]: each input's slice is
/// copied (identity) or requantized (requantize_span) into the output's parameters.
template <class Round = RoundHalfAwayFromZero, class T>
inline void concat(const std::vector<ConcatInput<T>>& inputs, std::int64_t outer, std::int32_t zp_out,
                   std::int32_t qmin, std::int32_t qmax, T* output) {
    std::int64_t out_slice = 0;
    for (const auto& in : inputs) out_slice += in.slice;
    for (std::int64_t o = 0; o < outer; ++o) {
        T* dst = output + o * out_slice;
        for (const auto& in : inputs) {
            const T* src = in.data + o * in.slice;
            if (in.identity) std::memcpy(dst, src, static_cast<std::size_t>(in.slice) * sizeof(T));
            else reference::requantize_span<Round>(src, dst, in.slice, in.zero_point, in.multiplier, zp_out, qmin, qmax);
            dst += in.slice;
        }
    }
}

/// Nearest-neighbour resize of NHWC (same parameters in and out).
template <class T>
inline void resize_nearest(const T* input, int batch, int in_h, int in_w, int c, const ResizeAxis& ys,
                           const ResizeAxis& xs, T* output) {
    const int oh = static_cast<int>(ys.nearest.size()), ow = static_cast<int>(xs.nearest.size());
    for (int n = 0; n < batch; ++n)
        for (int y = 0; y < oh; ++y)
            for (int x = 0; x < ow; ++x)
                std::memcpy(output + ((std::int64_t(n) * oh + y) * ow + x) * c,
                            input + ((std::int64_t(n) * in_h + ys.nearest[y]) * in_w + xs.nearest[x]) * c,
                            static_cast<std::size_t>(c) * sizeof(T));
}

/// Bilinear resize of NHWC (same parameters in and out):
///   out = zp + round(sum_taps wy * wx * (q - zp) / 2^22)   (weights of 11 bits per axis)
template <class Round = RoundHalfAwayFromZero, class T>
inline void resize_bilinear(const T* input, int batch, int in_h, int in_w, int c, std::int32_t zp, const ResizeAxis& ys,
                            const ResizeAxis& xs, T* output) {
    const int oh = static_cast<int>(ys.i0.size()), ow = static_cast<int>(xs.i0.size());
    const std::int64_t one = std::int64_t(1) << kResizeWeightBits;
    auto at = [&](int n, int y, int x, int ch) -> std::int64_t {
        return std::int64_t(input[((std::int64_t(n) * in_h + y) * in_w + x) * c + ch]) - zp;
    };
    for (int n = 0; n < batch; ++n)
        for (int y = 0; y < oh; ++y)
            for (int x = 0; x < ow; ++x)
                for (int ch = 0; ch < c; ++ch) {
                    const std::int64_t wy1 = ys.w1[y], wy0 = one - wy1, wx1 = xs.w1[x], wx0 = one - wx1;
                    const std::int64_t v = wy0 * (wx0 * at(n, ys.i0[y], xs.i0[x], ch) + wx1 * at(n, ys.i0[y], xs.i1[x], ch)) +
                                           wy1 * (wx0 * at(n, ys.i1[y], xs.i0[x], ch) + wx1 * at(n, ys.i1[y], xs.i1[x], ch));
                    output[((std::int64_t(n) * oh + y) * ow + x) * c + ch] =
                        static_cast<T>(rounding_shift_right<Round>(v, 2 * kResizeWeightBits) + zp);
                }
}

}  // namespace reference
BPUQ_NAMESPACE_END
