// Image transformers for calibration/evaluation data: PIL-exact bilinear resize, crops, colour
// order, and conversion to float tensors. Std only; results match PIL 9 on the same pixels.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "image.hpp"

BPUQ_NAMESPACE_BEGIN
namespace io {

namespace detail {

/// PIL's resampling coefficients for one axis (triangle filter of support 1, widened by the
/// downscale factor so that downsizing averages — PIL's antialiasing). Mirrors the arithmetic
/// of Pillow's precompute_coeffs: double precision, bounds rounded by (int)(x + 0.5).
struct ResampleAxis {
    int taps = 0;                       ///< coefficients per output sample
    std::vector<int> first;             ///< first input index of each output sample
    std::vector<int> count;             ///< number of inputs used by each output sample
    std::vector<std::int32_t> weights;  ///< taps per output, fixed point with kPilPrecision bits
};

constexpr int kPilPrecision = 32 - 8 - 2;

inline ResampleAxis pil_bilinear_axis(int in_size, double in0, double in1, int out_size) {
    ResampleAxis a;
    const double scale = (in1 - in0) / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = 1.0 * filterscale;
    a.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
    a.first.resize(static_cast<std::size_t>(out_size));
    a.count.resize(static_cast<std::size_t>(out_size));
    a.weights.assign(static_cast<std::size_t>(out_size) * a.taps, 0);
    std::vector<double> k(static_cast<std::size_t>(a.taps));
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = in0 + (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        int xmin = static_cast<int>(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = static_cast<int>(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            double t = (x + xmin - center + 0.5) * ss;
            if (t < 0.0) t = -t;
            const double w = t < 1.0 ? 1.0 - t : 0.0;
            k[static_cast<std::size_t>(x)] = w;
            ww += w;
        }
        for (int x = 0; x < xmax; ++x) {
            double w = k[static_cast<std::size_t>(x)];
            if (ww != 0.0) w /= ww;
            // PIL's normalize_coeffs_8bpc: round half away from zero to fixed point
            a.weights[static_cast<std::size_t>(xx) * a.taps + x] =
                w < 0 ? static_cast<std::int32_t>(-0.5 + w * (1 << kPilPrecision))
                      : static_cast<std::int32_t>(0.5 + w * (1 << kPilPrecision));
        }
        a.first[static_cast<std::size_t>(xx)] = xmin;
        a.count[static_cast<std::size_t>(xx)] = xmax;
    }
    return a;
}

inline std::uint8_t pil_clip8(std::int32_t v) {
    if (v >= (1 << kPilPrecision << 8)) return 255;
    if (v <= 0) return 0;
    return static_cast<std::uint8_t>(v >> kPilPrecision);
}

}  // namespace detail

/// Bilinear resize with PIL's semantics (Image.resize(size, Image.BILINEAR)): separable,
/// antialiased when shrinking, 8-bit fixed-point accumulation, horizontal pass first.
inline Image resize_bilinear_pil(const Image& in, int out_w, int out_h) {
    BPUQ_CHECK(out_w > 0 && out_h > 0, "transform.size",
               "resize target " + std::to_string(out_w) + "x" + std::to_string(out_h) + " must be positive");
    const bool need_h = out_w != in.width;
    const bool need_v = out_h != in.height;
    const auto ax = detail::pil_bilinear_axis(in.width, 0.0, in.width, out_w);
    const auto ay = detail::pil_bilinear_axis(in.height, 0.0, in.height, out_h);
    const int C = in.channels;
    // rows of the input the vertical pass reads
    const int y_first = ay.first[0];
    const int y_last = ay.first.back() + ay.count.back();
    Image tmp;
    const Image* src = &in;
    int row_offset = 0;  // index of src's row 0 in input coordinates
    if (need_h) {
        tmp = make_image(out_w, y_last - y_first, C);
        for (int y = 0; y < tmp.height; ++y) {
            const std::uint8_t* irow = in.row(y + y_first);
            std::uint8_t* orow = tmp.row(y);
            for (int xx = 0; xx < out_w; ++xx) {
                const std::int32_t* k = &ax.weights[static_cast<std::size_t>(xx) * ax.taps];
                const int x0 = ax.first[static_cast<std::size_t>(xx)], n = ax.count[static_cast<std::size_t>(xx)];
                for (int c = 0; c < C; ++c) {
                    std::int32_t ss = 1 << (detail::kPilPrecision - 1);
                    for (int x = 0; x < n; ++x) ss += irow[(x0 + x) * C + c] * k[x];
                    orow[xx * C + c] = detail::pil_clip8(ss);
                }
            }
        }
        src = &tmp;
        row_offset = y_first;
    }
    if (!need_v) {
        if (!need_h) return in;
        return tmp;
    }
    Image out = make_image(src->width, out_h, C);
    for (int yy = 0; yy < out_h; ++yy) {
        const std::int32_t* k = &ay.weights[static_cast<std::size_t>(yy) * ay.taps];
        const int y0 = ay.first[static_cast<std::size_t>(yy)] - row_offset, n = ay.count[static_cast<std::size_t>(yy)];
        std::uint8_t* orow = out.row(yy);
        for (int xc = 0; xc < src->width * C; ++xc) {
            std::int32_t ss = 1 << (detail::kPilPrecision - 1);
            for (int y = 0; y < n; ++y) ss += src->row(y0 + y)[xc] * k[y];
            orow[xc] = detail::pil_clip8(ss);
        }
    }
    return out;
}

/// Crop the box [left, left + w) x [top, top + h); the box must lie inside the image.
inline Image crop(const Image& in, int left, int top, int w, int h) {
    BPUQ_CHECK(left >= 0 && top >= 0 && w > 0 && h > 0 && left + w <= in.width && top + h <= in.height, "transform.crop",
               "crop box (" + std::to_string(left) + ", " + std::to_string(top) + ", " + std::to_string(w) + "x" +
                   std::to_string(h) + ") is outside the " + std::to_string(in.width) + "x" + std::to_string(in.height) + " image");
    Image out = make_image(w, h, in.channels);
    for (int y = 0; y < h; ++y)
        std::copy(in.row(top + y) + left * in.channels, in.row(top + y) + (left + w) * in.channels, out.row(y));
    return out;
}

/// Python's round(): half to even.
inline long long python_round(double v) {
    const double r = std::nearbyint(v);  // default FE mode: ties to even
    return static_cast<long long>(r);
}

/// Centre crop of `fraction` of width and height (TF "central_crop" / the MobileNet recipe):
/// cw = round(fraction * w), left = (w - cw) // 2.
inline Image center_crop_fraction(const Image& in, double fraction) {
    BPUQ_CHECK(fraction > 0.0 && fraction <= 1.0, "transform.crop", "crop fraction " + std::to_string(fraction) + " must be in (0, 1]");
    const int cw = static_cast<int>(python_round(fraction * in.width));
    const int ch = static_cast<int>(python_round(fraction * in.height));
    return crop(in, (in.width - cw) / 2, (in.height - ch) / 2, cw, ch);
}

/// Centre crop to w x h with torchvision's offsets: left = int(round((W - w) / 2)).
inline Image center_crop(const Image& in, int w, int h) {
    const int left = static_cast<int>(python_round((in.width - w) / 2.0));
    const int top = static_cast<int>(python_round((in.height - h) / 2.0));
    return crop(in, left, top, w, h);
}

/// Resize so the shorter side becomes `size`; the longer side is round(size * long / short)
/// (Python's round, as the reference recipes compute it).
inline Image resize_short_side_pil(const Image& in, int size) {
    if (in.width <= in.height) {
        const int h = static_cast<int>(python_round(static_cast<double>(size) * in.height / in.width));
        return resize_bilinear_pil(in, size, h);
    }
    const int w = static_cast<int>(python_round(static_cast<double>(size) * in.width / in.height));
    return resize_bilinear_pil(in, w, size);
}

/// Swap R and B (RGB <-> BGR).
inline Image swap_rb(Image im) {
    if (im.channels != 3) return im;
    for (std::size_t i = 0; i < im.pixels.size(); i += 3) std::swap(im.pixels[i], im.pixels[i + 2]);
    return im;
}

/// Pixels to a float32 tensor [1, C, H, W] (nchw) or [1, H, W, C], computing (x - mean[c]) * scale[c]
/// (mean/scale: empty = 0/1, one value = all channels, else one per channel).
inline Tensor image_to_tensor(const Image& im, bool nchw, const std::vector<float>& mean = {}, const std::vector<float>& scale = {}) {
    const int C = im.channels;
    auto pick = [&](const std::vector<float>& v, int c, float dflt) {
        if (v.empty()) return dflt;
        BPUQ_CHECK(v.size() == 1 || static_cast<int>(v.size()) == C, "transform.normalize",
                   "mean/scale has " + std::to_string(v.size()) + " values for a " + std::to_string(C) + "-channel image");
        return v.size() == 1 ? v[0] : v[static_cast<std::size_t>(c)];
    };
    Tensor t(DType::float32, nchw ? Shape{1, C, im.height, im.width} : Shape{1, im.height, im.width, C});
    float* dst = t.data<float>();
    const std::size_t plane = static_cast<std::size_t>(im.width) * im.height;
    for (int c = 0; c < C; ++c) {
        const float m = pick(mean, c, 0.0f), s = pick(scale, c, 1.0f);
        for (std::size_t p = 0; p < plane; ++p) {
            const float v = (static_cast<float>(im.pixels[p * C + c]) - m) * s;
            if (nchw) dst[c * plane + p] = v;
            else dst[p * C + c] = v;
        }
    }
    return t;
}

}  // namespace io
BPUQ_NAMESPACE_END
