// BT.601 colour conversions of pixel tensors (RGB/BGR -> YUV444, the NV12 chroma round trip) for
// calibration data, and NV12 packing/unpacking. Std only. Definitions: docs/CONVERT.md "Runtime
// input types"; the YUV -> RGB direction the model computes is flow/colour_conversion.hpp.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"

BPUQ_NAMESPACE_BEGIN
namespace io {

/// The two BT.601 variants of SPEC §1.1: full range (Y, U, V in 0..255, JPEG) and video range
/// (Y in 16..235, U and V in 16..240).
enum class YuvRange { full, video };

/// Where the three colour channels of a 4-D pixel tensor sit: dims {C, H, W} of [1, C, H, W]
/// (NCHW) or [1, H, W, C] (NHWC).
struct PixelLayout {
    bool nchw = true;
    std::int64_t c = 0, h = 0, w = 0;

    static PixelLayout of(const Tensor& t, bool nchw) {
        BPUQ_CHECK(t.rank() == 4 && t.dim(0) == 1, "colour.shape",
                   "a pixel tensor must be [1, C, H, W] or [1, H, W, C], got " + shape_to_string(t.shape()));
        PixelLayout l;
        l.nchw = nchw;
        l.c = nchw ? t.dim(1) : t.dim(3);
        l.h = nchw ? t.dim(2) : t.dim(1);
        l.w = nchw ? t.dim(3) : t.dim(2);
        return l;
    }
    std::int64_t at(std::int64_t ch, std::int64_t y, std::int64_t x) const {
        return nchw ? (ch * h + y) * w + x : (y * w + x) * c + ch;
    }
};

namespace detail {
inline float round_pixel(double v) { return static_cast<float>(std::min(255.0, std::max(0.0, std::floor(v + 0.5)))); }
}  // namespace detail

/// RGB (or BGR when `bgr`) pixels -> YUV444 pixels, BT.601, rounded half up and clamped to 0..255
/// — what a camera's encoder produces from the same picture.
inline Tensor rgb_to_yuv444(const Tensor& rgb, bool nchw, bool bgr, YuvRange range) {
    BPUQ_CHECK(rgb.dtype() == DType::float32, "colour.dtype", "rgb_to_yuv444 takes float32 pixels");
    const PixelLayout l = PixelLayout::of(rgb, nchw);
    BPUQ_CHECK(l.c == 3, "colour.shape", "rgb_to_yuv444 needs 3 channels, got " + std::to_string(l.c));
    // rows: Y, U, V; columns: R, G, B; then the offsets
    static const double full[3][4] = {{0.299, 0.587, 0.114, 0.0},
                                      {-0.168736, -0.331264, 0.5, 128.0},
                                      {0.5, -0.418688, -0.081312, 128.0}};
    static const double video[3][4] = {{0.256788, 0.504129, 0.097906, 16.0},
                                       {-0.148223, -0.290993, 0.439216, 128.0},
                                       {0.439216, -0.367788, -0.071427, 128.0}};
    const auto& m = range == YuvRange::full ? full : video;
    Tensor out(DType::float32, rgb.shape());
    const float* in = rgb.data<float>();
    float* o = out.data<float>();
    const std::int64_t r_ch = bgr ? 2 : 0, b_ch = bgr ? 0 : 2;
    for (std::int64_t y = 0; y < l.h; ++y)
        for (std::int64_t x = 0; x < l.w; ++x) {
            const double r = in[l.at(r_ch, y, x)], g = in[l.at(1, y, x)], b = in[l.at(b_ch, y, x)];
            for (int k = 0; k < 3; ++k) o[l.at(k, y, x)] = detail::round_pixel(m[k][0] * r + m[k][1] * g + m[k][2] * b + m[k][3]);
        }
    return out;
}

/// The chroma that survives NV12 (4:2:0): U and V averaged over each 2x2 block (rounded half up)
/// and repeated over the block again (nearest upsampling) — SPEC §1.1's "calibration sees what
/// the device sees". Y is untouched. H and W must be even.
inline Tensor nv12_round_trip(const Tensor& yuv, bool nchw) {
    BPUQ_CHECK(yuv.dtype() == DType::float32, "colour.dtype", "nv12_round_trip takes float32 pixels");
    const PixelLayout l = PixelLayout::of(yuv, nchw);
    BPUQ_CHECK(l.c == 3 && l.h % 2 == 0 && l.w % 2 == 0, "colour.shape",
               "NV12 needs 3 channels and an even height and width, got " + shape_to_string(yuv.shape()));
    Tensor out = yuv.clone();
    const float* in = yuv.data<float>();
    float* o = out.data<float>();
    for (std::int64_t ch = 1; ch < 3; ++ch)
        for (std::int64_t y = 0; y < l.h; y += 2)
            for (std::int64_t x = 0; x < l.w; x += 2) {
                const double s = double(in[l.at(ch, y, x)]) + in[l.at(ch, y, x + 1)] + in[l.at(ch, y + 1, x)] + in[l.at(ch, y + 1, x + 1)];
                const float v = detail::round_pixel(s / 4.0);
                o[l.at(ch, y, x)] = o[l.at(ch, y, x + 1)] = o[l.at(ch, y + 1, x)] = o[l.at(ch, y + 1, x + 1)] = v;
            }
    return out;
}

/// YUV444 pixels (integers 0..255) -> an NV12 byte image [H * 3 / 2, W]: the Y plane, then
/// interleaved U, V at half resolution (each the rounded mean of its 2x2 block).
inline Tensor yuv444_to_nv12(const Tensor& yuv, bool nchw) {
    const Tensor sub = nv12_round_trip(yuv, nchw);
    const PixelLayout l = PixelLayout::of(sub, nchw);
    Tensor out(DType::uint8, {l.h * 3 / 2, l.w});
    std::uint8_t* o = out.data<std::uint8_t>();
    const float* in = sub.data<float>();
    for (std::int64_t y = 0; y < l.h; ++y)
        for (std::int64_t x = 0; x < l.w; ++x) o[y * l.w + x] = static_cast<std::uint8_t>(in[l.at(0, y, x)]);
    for (std::int64_t y = 0; y < l.h / 2; ++y)
        for (std::int64_t x = 0; x < l.w / 2; ++x) {
            o[(l.h + y) * l.w + 2 * x] = static_cast<std::uint8_t>(in[l.at(1, 2 * y, 2 * x)]);
            o[(l.h + y) * l.w + 2 * x + 1] = static_cast<std::uint8_t>(in[l.at(2, 2 * y, 2 * x)]);
        }
    return out;
}

}  // namespace io
BPUQ_NAMESPACE_END
