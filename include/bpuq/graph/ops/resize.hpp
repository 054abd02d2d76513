// Resize (opset 10-19) and Upsample: nearest / linear / cubic, every coordinate
// transformation mode, antialias, exclude_outside, tf_crop_and_resize, axes and
// keep_aspect_ratio_policy. Applied separably, one axis at a time, as ONNX defines it.
#pragma once

#include <cmath>

#include "common.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {
namespace ops {

struct ResizeParams {
    std::string mode = "nearest", coord = "half_pixel", nearest_mode = "round_prefer_floor";
    float cubic_a = -0.75f, extrapolation = 0.f;
    bool exclude_outside = false, antialias = false;
    std::vector<double> scales;  // per input axis
    Shape out;
    std::vector<float> roi;  // [starts..., ends...] per input axis (tf_crop_and_resize)
};

/// Output sizes and scales from the node and its (constant or runtime) inputs.
inline ResizeParams resize_params(const Node& n, const Shape& x, const Tensor* roi_t, const Tensor* scales_t,
                                  const Tensor* sizes_t, std::int64_t opset) {
    ResizeParams p;
    const std::size_t r = x.size();
    const bool upsample = n.op_type == "Upsample";
    p.mode = n.attr_string("mode", "nearest");
    if (p.mode == "bilinear") p.mode = "linear";  // Upsample-7 spelling
    BPUQ_CHECK(p.mode == "nearest" || p.mode == "linear" || (p.mode == "cubic" && !upsample), "graph.attribute",
               n.describe() + " mode '" + p.mode + "'; allowed: nearest, linear" + (upsample ? "" : ", cubic"));
    if (upsample || opset < 11) {
        p.coord = "asymmetric";
        p.nearest_mode = "floor";
    } else {
        p.coord = n.attr_string("coordinate_transformation_mode", "half_pixel");
        p.nearest_mode = n.attr_string("nearest_mode", "round_prefer_floor");
        p.cubic_a = n.attr_float("cubic_coeff_a", -0.75f);
        p.exclude_outside = n.attr_int("exclude_outside", 0) != 0;
        p.extrapolation = n.attr_float("extrapolation_value", 0.f);
        p.antialias = n.attr_int("antialias", 0) != 0;
    }
    static const char* coords[] = {"half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
                                   "asymmetric", "tf_crop_and_resize"};
    BPUQ_CHECK(std::find_if(std::begin(coords), std::end(coords), [&](const char* c) { return p.coord == c; }) !=
                   std::end(coords),
               "graph.attribute", n.describe() + " coordinate_transformation_mode '" + p.coord + "' is not supported");
    static const char* nearest[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    BPUQ_CHECK(std::find_if(std::begin(nearest), std::end(nearest), [&](const char* c) { return p.nearest_mode == c; }) !=
                   std::end(nearest),
               "graph.attribute", n.describe() + " nearest_mode '" + p.nearest_mode + "' is not supported");

    std::vector<std::int64_t> axes = n.attr_ints("axes");
    if (axes.empty())
        for (std::size_t i = 0; i < r; ++i) axes.push_back(std::int64_t(i));
    for (auto& a : axes) a = norm_axis(n, a, std::int64_t(r));

    p.scales.assign(r, 1.0);
    p.out = x;
    std::vector<float> scales;
    if (upsample && opset < 9) scales = n.attr_floats("scales");
    else if (scales_t && scales_t->numel() > 0) scales = to_floats(n, *scales_t, "scales");
    if (!scales.empty()) {
        BPUQ_CHECK(scales.size() == axes.size(), "graph.shape",
                   n.describe() + " has " + std::to_string(scales.size()) + " scales for " + std::to_string(axes.size()) + " axes");
        for (std::size_t i = 0; i < axes.size(); ++i) {
            const std::size_t a = std::size_t(axes[i]);
            BPUQ_CHECK(scales[i] > 0.f, "graph.attribute", n.describe() + " scales must be positive");
            p.scales[a] = scales[i];
            p.out[a] = static_cast<std::int64_t>(double(x[a]) * double(float(scales[i])));
        }
    } else {
        BPUQ_CHECK(sizes_t && sizes_t->numel() > 0, "graph.input", n.describe() + " needs scales or sizes");
        const std::vector<std::int64_t> sizes = to_int64s(n, *sizes_t, "sizes");
        BPUQ_CHECK(sizes.size() == axes.size(), "graph.shape", n.describe() + " sizes do not match axes");
        const std::string policy = n.attr_string("keep_aspect_ratio_policy", "stretch");
        if (policy == "stretch") {
            for (std::size_t i = 0; i < axes.size(); ++i) {
                const std::size_t a = std::size_t(axes[i]);
                p.out[a] = sizes[i];
                p.scales[a] = double(float(double(sizes[i]) / double(x[a])));
            }
        } else {
            BPUQ_CHECK(policy == "not_larger" || policy == "not_smaller", "graph.attribute",
                       n.describe() + " keep_aspect_ratio_policy '" + policy + "'; allowed: stretch, not_larger, not_smaller");
            double s = policy == "not_larger" ? 1e300 : 0.0;
            for (std::size_t i = 0; i < axes.size(); ++i) {
                const double si = double(sizes[i]) / double(x[std::size_t(axes[i])]);
                s = policy == "not_larger" ? std::min(s, si) : std::max(s, si);
            }
            for (std::size_t i = 0; i < axes.size(); ++i) {
                const std::size_t a = std::size_t(axes[i]);
                p.scales[a] = s;
                p.out[a] = static_cast<std::int64_t>(std::nearbyint(s * double(x[a])));
            }
        }
    }
    p.roi.assign(2 * r, 0.f);
    for (std::size_t i = 0; i < r; ++i) p.roi[r + i] = 1.f;
    if (p.coord == "tf_crop_and_resize" && roi_t && roi_t->numel() > 0) {
        const std::vector<float> roi = to_floats(n, *roi_t, "roi");
        BPUQ_CHECK(roi.size() == 2 * axes.size(), "graph.shape", n.describe() + " roi does not match axes");
        for (std::size_t i = 0; i < axes.size(); ++i) {
            p.roi[std::size_t(axes[i])] = roi[i];
            p.roi[r + std::size_t(axes[i])] = roi[axes.size() + i];
        }
    }
    return p;
}

inline void infer_resize(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t opset) {
    set_output_dtype(out, 0, in[0].present() && in[0].value->has_dtype ? in[0].value->dtype : DType::float32);
    if (!in[0].known_shape()) return;
    const bool new_style = n.op_type == "Resize" && opset >= 11;
    const std::size_t si = new_style ? 2 : 1, zi = 3;
    auto c = [&](std::size_t i) -> const Tensor* { return i < in.size() ? in[i].constant : nullptr; };
    auto missing = [&](std::size_t i) { return i < in.size() && in[i].present() && !in[i].constant; };
    if (missing(si) || (new_style && missing(zi))) return;
    const ResizeParams p = resize_params(n, in[0].shape(), new_style ? c(1) : nullptr, c(si), new_style ? c(zi) : nullptr, opset);
    set_output(out, 0, out[0].dtype, p.out);
}

/// For one output coordinate: source taps (clamped indices and weights), or extrapolate.
struct Taps {
    std::vector<std::int64_t> idx;
    std::vector<double> w;
    bool extrapolate = false;
};

inline Taps resize_taps(const ResizeParams& p, std::size_t axis, std::int64_t in_len, std::int64_t out_len,
                        std::int64_t x) {
    Taps t;
    const double scale = p.scales[axis];
    const double out_w = scale * double(in_len);
    double xo = 0;
    if (p.coord == "align_corners") xo = out_w == 1 ? 0.0 : double(x) * double(in_len - 1) / (out_w - 1);
    else if (p.coord == "asymmetric") xo = double(x) / scale;
    else if (p.coord == "tf_crop_and_resize") {
        const std::size_t r = p.roi.size() / 2;
        const double s = p.roi[axis], e = p.roi[r + axis];
        xo = out_w == 1 ? (e - s) * double(in_len - 1) / 2 : double(x) * (e - s) * double(in_len - 1) / (out_w - 1);
        xo += s * double(in_len - 1);
        if (xo < 0 || xo > double(in_len - 1)) {
            t.extrapolate = true;
            return t;
        }
    } else if (p.coord == "pytorch_half_pixel") xo = out_w == 1 ? -0.5 : (double(x) + 0.5) / scale - 0.5;
    else if (p.coord == "half_pixel_symmetric") {
        const double adjustment = double(out_len) / out_w, center = double(in_len) / 2;
        xo = center * (1 - adjustment) + (double(x) + 0.5) / scale - 0.5;
    } else xo = (double(x) + 0.5) / scale - 0.5;

    const double fl = std::floor(xo);
    const double ratio = xo == fl ? 1.0 : xo - fl;
    std::vector<double> c;
    const double A = p.cubic_a;
    if (p.mode == "nearest") {
        const bool integer = xo == fl;
        bool first;
        if (integer) first = false;
        else if (p.nearest_mode == "round_prefer_floor") first = ratio <= 0.5;
        else if (p.nearest_mode == "round_prefer_ceil") first = ratio < 0.5;
        else first = p.nearest_mode == "floor";
        c = first ? std::vector<double>{1, 0} : std::vector<double>{0, 1};
    } else if (p.mode == "linear") {
        if (p.antialias && scale < 1) {
            const std::int64_t start = std::int64_t(std::floor(-1 / scale) + 1), foot = 2 - 2 * start;
            double sum = 0;
            for (std::int64_t i = start; i < start + foot; ++i) {
                const double v = std::max(0.0, std::min(1.0, 1 - std::fabs((double(i) - ratio) * scale)));
                c.push_back(v);
                sum += v;
            }
            for (auto& v : c) v /= sum;
        } else {
            c = {1 - ratio, ratio};
        }
    } else {  // cubic
        if (p.antialias && scale < 1) {
            auto coeff = [A](double v) {
                v = std::fabs(v);
                const double v2 = v * v, v3 = v2 * v;
                if (v <= 1) return (A + 2) * v3 - (A + 3) * v2 + 1;
                if (v < 2) return A * v3 - 5 * A * v2 + 8 * A * v - 4 * A;
                return 0.0;
            };
            const std::int64_t start = std::int64_t(std::floor(-2 / scale) + 1), end = 2 - start;
            double sum = 0;
            for (std::int64_t i = start; i < end; ++i) {
                c.push_back(coeff(scale * (double(i) - ratio)));
                sum += c.back();
            }
            for (auto& v : c) v /= sum;
        } else {
            const double r = ratio, q = 1 - ratio;
            c = {((A * (r + 1) - 5 * A) * (r + 1) + 8 * A) * (r + 1) - 4 * A, ((A + 2) * r - (A + 3)) * r * r + 1,
                 ((A + 2) * q - (A + 3)) * q * q + 1, ((A * (q + 1) - 5 * A) * (q + 1) + 8 * A) * (q + 1) - 4 * A};
        }
    }
    // the n indices nearest to xo (ties to the smaller), as ONNX's reference pads with edge
    // values by ceil(n/2) and picks neighbours there; clamping reproduces the edge padding
    const std::int64_t n = std::int64_t(c.size()), pad = (n + 1) / 2;
    const double xp = xo + double(pad);
    const std::int64_t limit = in_len + 2 * pad;
    std::vector<std::int64_t> cand;
    for (std::int64_t i = std::int64_t(std::floor(xp)) - n - 1; i <= std::int64_t(std::floor(xp)) + n + 1; ++i)
        if (i >= 0 && i < limit) cand.push_back(i);
    std::stable_sort(cand.begin(), cand.end(), [&](std::int64_t a, std::int64_t b) {
        const double da = std::fabs(xp - double(a)), db = std::fabs(xp - double(b));
        return da != db ? da < db : a < b;
    });
    cand.resize(std::size_t(std::min<std::int64_t>(n, std::int64_t(cand.size()))));
    std::sort(cand.begin(), cand.end());
    double sum = 0;
    for (std::size_t i = 0; i < cand.size(); ++i) {
        const std::int64_t orig = cand[i] - pad;
        if (p.exclude_outside && (orig < 0 || orig >= in_len)) c[i] = 0;
        sum += c[i];
        t.idx.push_back(std::max<std::int64_t>(0, std::min(in_len - 1, orig)));
        t.w.push_back(c[i]);
    }
    if (p.exclude_outside && sum != 0)
        for (auto& v : t.w) v /= sum;
    return t;
}

inline void run_resize(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                       const ExecContext&, std::int64_t opset) {
    const Tensor& x = need(n, in, 0);
    check_float(n, x, "input");
    const bool new_style = n.op_type == "Resize" && opset >= 11;
    const ResizeParams p = resize_params(n, x.shape(), new_style ? opt(in, 1) : nullptr, opt(in, new_style ? 2 : 1),
                                         new_style ? opt(in, 3) : nullptr, opset);
    Tensor cur = x;
    const std::size_t r = x.rank();
    for (std::size_t a = 0; a < r; ++a) {
        const std::int64_t in_len = cur.dim(a), out_len = p.out[a];
        const bool identity = in_len == out_len && p.scales[a] == 1.0 && p.coord != "tf_crop_and_resize";
        if (identity) continue;
        Shape os = cur.shape();
        os[a] = out_len;
        Tensor next(DType::float32, os);
        const std::vector<std::int64_t> s(cur.shape().begin(), cur.shape().end());
        const std::int64_t outer = product(s, 0, a), inner = product(s, a + 1);
        const float* src = cur.data<float>();
        float* dst = next.data<float>();
        for (std::int64_t o = 0; o < out_len; ++o) {
            const Taps t = resize_taps(p, a, in_len, out_len, o);
            for (std::int64_t b = 0; b < outer; ++b) {
                float* d = dst + (b * out_len + o) * inner;
                if (t.extrapolate) {
                    std::fill(d, d + inner, p.extrapolation);
                    continue;
                }
                for (std::int64_t i = 0; i < inner; ++i) {
                    double acc = 0;
                    for (std::size_t k = 0; k < t.idx.size(); ++k)
                        if (t.w[k] != 0) acc += t.w[k] * double(src[(b * in_len + t.idx[k]) * inner + i]);
                    d[i] = float(acc);
                }
            }
        }
        cur = next;
    }
    out[0] = cur.owns_data() && cur.raw() != x.raw() ? cur : x.clone();
}

}  // namespace ops
}  // namespace graph

BPUQ_NAMESPACE_END
