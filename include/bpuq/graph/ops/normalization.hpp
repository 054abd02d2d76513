// Normalization and reductions: BatchNormalization (inference and training mode), Softmax,
// ReduceMean; and QuantizeLinear / DequantizeLinear (per tensor or per axis).
#pragma once

#include <cmath>
#include <limits>

#include "common.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {
namespace ops {

inline void infer_batchnorm(const Node&, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    set_output_dtype(out, 0, DType::float32);
    if (in[0].known_shape()) set_output(out, 0, DType::float32, in[0].shape());
    for (std::size_t i = 1; i < out.size() && i < 3; ++i)
        if (in.size() > 3 && in[3].known_shape()) set_output(out, i, DType::float32, in[3].shape());
}

inline void run_batchnorm(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                          const ExecContext& ctx, std::int64_t opset) {
    const Tensor& x = need(n, in, 0);
    check_float(n, x, "input");
    BPUQ_CHECK(x.rank() >= 2, "graph.shape", n.describe() + " needs an input of rank >= 2");
    const std::int64_t N = x.dim(0), C = x.dim(1), S = C ? x.numel() / (N * C) : 0;
    const std::vector<float> scale = to_floats(n, need(n, in, 1), "scale"), bias = to_floats(n, need(n, in, 2), "B");
    std::vector<float> mean = to_floats(n, need(n, in, 3), "mean"), var = to_floats(n, need(n, in, 4), "var");
    BPUQ_CHECK(scale.size() == std::size_t(C) && bias.size() == std::size_t(C) && mean.size() == std::size_t(C) &&
                   var.size() == std::size_t(C),
               "graph.shape", n.describe() + " parameters must have " + std::to_string(C) + " values");
    const float eps = n.attr_float("epsilon", 1e-5f);
    const bool training = opset >= 14 && n.attr_int("training_mode", 0) != 0;
    const float* xd = x.data<float>();
    if (training) {
        // batch statistics (population variance); running stats blended with `momentum`
        const float momentum = n.attr_float("momentum", 0.9f);
        std::vector<float> bm(std::size_t(C), 0.f), bv(std::size_t(C), 0.f);
        for (std::int64_t c = 0; c < C; ++c) {
            double s = 0, s2 = 0;
            for (std::int64_t b = 0; b < N; ++b)
                for (std::int64_t i = 0; i < S; ++i) s += xd[(b * C + c) * S + i];
            const double m = s / double(N * S);
            for (std::int64_t b = 0; b < N; ++b)
                for (std::int64_t i = 0; i < S; ++i) {
                    const double d = xd[(b * C + c) * S + i] - m;
                    s2 += d * d;
                }
            bm[std::size_t(c)] = float(m);
            bv[std::size_t(c)] = float(s2 / double(N * S));
        }
        if (out.size() > 1) {
            out[1] = Tensor(DType::float32, {C});
            for (std::int64_t c = 0; c < C; ++c)
                out[1].data<float>()[c] = mean[std::size_t(c)] * momentum + bm[std::size_t(c)] * (1 - momentum);
        }
        if (out.size() > 2) {
            out[2] = Tensor(DType::float32, {C});
            for (std::int64_t c = 0; c < C; ++c)
                out[2].data<float>()[c] = var[std::size_t(c)] * momentum + bv[std::size_t(c)] * (1 - momentum);
        }
        mean = bm;
        var = bv;
    }
    out[0] = Tensor(DType::float32, x.shape());
    float* yd = out[0].data<float>();
    ctx.parallel_for(N * C, 4, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t nc = b; nc < e; ++nc) {
            const std::size_t c = std::size_t(nc % C);
            const float k = scale[c] / std::sqrt(var[c] + eps), o = bias[c] - mean[c] * k;
            for (std::int64_t i = 0; i < S; ++i) yd[nc * S + i] = xd[nc * S + i] * k + o;
        }
    });
}

inline void run_softmax(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                        const ExecContext& ctx, std::int64_t opset) {
    const Tensor& x = need(n, in, 0);
    check_float(n, x, "input");
    const std::int64_t r = std::int64_t(x.rank());
    const std::int64_t axis = norm_axis(n, n.attr_int("axis", opset < 13 ? 1 : -1), r);
    const std::vector<std::int64_t> s(x.shape().begin(), x.shape().end());
    // opset < 13: softmax over all axes from `axis` on (the input coerced to 2-D)
    const std::int64_t outer = product(s, 0, std::size_t(axis));
    const std::int64_t len = opset < 13 ? product(s, std::size_t(axis)) : s[std::size_t(axis)];
    const std::int64_t inner = opset < 13 ? 1 : product(s, std::size_t(axis) + 1);
    out[0] = Tensor(DType::float32, x.shape());
    const float* xd = x.data<float>();
    float* yd = out[0].data<float>();
    ctx.parallel_for(outer * inner, 16, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t oi = b; oi < e; ++oi) {
            const std::int64_t o = oi / inner, i = oi % inner;
            const float* xp = xd + o * len * inner + i;
            float* yp = yd + o * len * inner + i;
            float m = -std::numeric_limits<float>::infinity();
            for (std::int64_t k = 0; k < len; ++k) m = std::max(m, xp[k * inner]);
            float sum = 0.f;
            for (std::int64_t k = 0; k < len; ++k) sum += (yp[k * inner] = std::exp(xp[k * inner] - m));
            const float invs = 1.f / sum;
            for (std::int64_t k = 0; k < len; ++k) yp[k * inner] *= invs;
        }
    });
}

// ---- ReduceMean ----
inline std::vector<bool> reduce_mask(const Node& n, std::size_t rank, const std::vector<std::int64_t>& axes) {
    std::vector<bool> m(rank, axes.empty());
    for (auto a : axes) m[std::size_t(norm_axis(n, a, std::int64_t(rank)))] = true;
    return m;
}
inline Shape reduce_shape(const Shape& s, const std::vector<bool>& mask, bool keep) {
    Shape o;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (!mask[i]) o.push_back(s[i]);
        else if (keep) o.push_back(1);
    }
    return o;
}
inline bool reduce_axes(const Node& n, const std::vector<const Tensor*>& in, std::int64_t opset,
                        std::vector<std::int64_t>& axes) {
    if (opset < 18) axes = n.attr_ints("axes");
    else if (const Tensor* t = opt(in, 1)) axes = to_int64s(n, *t, "axes");
    // noop_with_empty_axes: no axes means identity instead of "reduce everything"
    return axes.empty() && n.attr_int("noop_with_empty_axes", 0) != 0;
}
inline void infer_reduce(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t opset) {
    set_output_dtype(out, 0, DType::float32);
    if (!in[0].known_shape()) return;
    if (opset >= 18 && in.size() > 1 && in[1].present() && !in[1].constant) return;
    std::vector<const Tensor*> c = {nullptr, in.size() > 1 ? in[1].constant : nullptr};
    std::vector<std::int64_t> axes;
    if (reduce_axes(n, c, opset, axes)) {
        set_output(out, 0, DType::float32, in[0].shape());
        return;
    }
    set_output(out, 0, DType::float32,
               reduce_shape(in[0].shape(), reduce_mask(n, in[0].shape().size(), axes), n.attr_int("keepdims", 1) != 0));
}
inline void run_reduce_mean(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                            const ExecContext&, std::int64_t opset) {
    const Tensor& x = need(n, in, 0);
    check_float(n, x, "input");
    std::vector<std::int64_t> axes;
    if (reduce_axes(n, in, opset, axes)) {
        out[0] = x;
        return;
    }
    const std::vector<bool> mask = reduce_mask(n, x.rank(), axes);
    const Shape keep = reduce_shape(x.shape(), mask, true);
    Tensor acc(DType::float32, keep);
    const Shape st = broadcast_strides(keep, x.shape());
    const float* xd = x.data<float>();
    float* ad = acc.data<float>();
    std::int64_t o = 0;
    for_each_broadcast_row<1>(x.shape(), {st}, [&](std::int64_t cnt, const std::array<std::int64_t, 1>& off,
                                                   const std::array<std::int64_t, 1>& inner) {
        for (std::int64_t i = 0; i < cnt; ++i) ad[off[0] + i * inner[0]] += xd[o + i];
        o += cnt;
    });
    const float count = acc.numel() ? float(x.numel()) / float(acc.numel()) : 1.f;
    for (std::int64_t i = 0; i < acc.numel(); ++i) ad[i] /= count;
    out[0] = acc.reshaped(reduce_shape(x.shape(), mask, n.attr_int("keepdims", 1) != 0));
}

// ---- QuantizeLinear / DequantizeLinear ----
inline void infer_quantize(const Node&, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    const DType t = in.size() > 2 && in[2].present() && in[2].value->has_dtype ? in[2].value->dtype : DType::uint8;
    set_output_dtype(out, 0, t);
    if (in[0].known_shape()) set_output(out, 0, t, in[0].shape());
}
inline void infer_dequantize(const Node&, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    set_output_dtype(out, 0, DType::float32);
    if (in[0].known_shape()) set_output(out, 0, DType::float32, in[0].shape());
}

/// Index of the scale/zero point for element i (per tensor, or along `axis`).
struct QuantAxis {
    std::int64_t count = 1, inner = 1;
    std::int64_t at(std::int64_t i) const { return count == 1 ? 0 : (i / inner) % count; }
};
inline QuantAxis quant_axis(const Node& n, const Tensor& x, const Tensor& scale) {
    QuantAxis q;
    if (scale.numel() <= 1) return q;
    BPUQ_CHECK(scale.rank() == 1, "graph.shape", n.describe() + " scale must be a scalar or 1-D");
    const std::size_t axis = std::size_t(norm_axis(n, n.attr_int("axis", 1), std::int64_t(x.rank())));
    BPUQ_CHECK(x.dim(axis) == scale.numel(), "graph.shape",
               n.describe() + " has " + std::to_string(scale.numel()) + " scales for axis " + std::to_string(axis) +
                   " of size " + std::to_string(x.dim(axis)));
    q.count = scale.numel();
    q.inner = product(std::vector<std::int64_t>(x.shape().begin() + std::ptrdiff_t(axis) + 1, x.shape().end()));
    return q;
}

inline void run_quantize_linear(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                                const ExecContext&, std::int64_t) {
    const Tensor& x = need(n, in, 0);
    check_float(n, x, "input");
    const std::vector<float> scale = to_floats(n, need(n, in, 1), "y_scale");
    const Tensor* zp = opt(in, 2);
    const DType t = zp ? zp->dtype() : DType::uint8;
    const QuantAxis qa = quant_axis(n, x, need(n, in, 1));
    out[0] = Tensor(t, x.shape());
    dispatch_numeric(n, t, [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_integral<T>::value && sizeof(T) <= 2) {
            for (std::int64_t i = 0; i < x.numel(); ++i) {
                const std::int64_t c = qa.at(i);
                const double z = zp ? double(zp->data<T>()[zp->numel() == 1 ? 0 : c]) : 0.0;
                const double q = std::nearbyint(double(x.data<float>()[i]) / double(scale[std::size_t(c)])) + z;
                out[0].data<T>()[i] = static_cast<T>(std::min<double>(std::numeric_limits<T>::max(),
                                                                      std::max<double>(std::numeric_limits<T>::lowest(), q)));
            }
        } else {
            BPUQ_THROW("graph.dtype", n.describe() + " output type " + dtype_name(t) +
                                          " is not supported (int8, uint8, int16, uint16)");
        }
    });
}

inline void run_dequantize_linear(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                                  const ExecContext&, std::int64_t) {
    const Tensor& x = need(n, in, 0);
    const std::vector<float> scale = to_floats(n, need(n, in, 1), "x_scale");
    const Tensor* zp = opt(in, 2);
    const QuantAxis qa = quant_axis(n, x, need(n, in, 1));
    out[0] = Tensor(DType::float32, x.shape());
    dispatch_numeric(n, x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        if constexpr (std::is_integral<T>::value) {
            BPUQ_CHECK(!zp || zp->dtype() == x.dtype(), "graph.dtype", n.describe() + " zero point type differs from x");
            for (std::int64_t i = 0; i < x.numel(); ++i) {
                const std::int64_t c = qa.at(i);
                const float z = zp ? float(zp->data<T>()[zp->numel() == 1 ? 0 : c]) : 0.f;
                out[0].data<float>()[i] = (float(x.data<T>()[i]) - z) * scale[std::size_t(c)];
            }
        } else {
            BPUQ_THROW("graph.dtype", n.describe() + " input type " + dtype_name(x.dtype()) + " is not an integer type");
        }
    });
}

}  // namespace ops
}  // namespace graph

BPUQ_NAMESPACE_END
