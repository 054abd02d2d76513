// Elementwise operators: activations, Clip, and broadcasting Add/Sub/Mul/Div/Pow/PRelu.
#pragma once

#include <cmath>
#include <limits>

#include "common.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {
namespace ops {

// ---- shape inference shared by elementwise ops ----
inline void infer_same_as_input(const Node&, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    if (in.empty() || !in[0].present()) return;
    if (in[0].value->has_dtype) set_output_dtype(out, 0, in[0].value->dtype);
    if (in[0].known_shape()) {
        out[0].shape = in[0].shape();
        out[0].has_shape = true;
    }
}
inline void infer_broadcast(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    if (in.size() < 2 || !in[0].present()) return;
    if (in[0].value->has_dtype) set_output_dtype(out, 0, in[0].value->dtype);
    if (in[0].known_shape() && in[1].known_shape()) {
        out[0].shape = broadcast_shapes(n, in[0].shape(), in[1].shape());
        out[0].has_shape = true;
    }
}

/// Applies f to every float element, split over the context's threads for large tensors.
template <class F>
void unary_float(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out, const ExecContext& ctx,
                 F f) {
    const Tensor& x = need(n, in, 0);
    check_float(n, x, "input");
    out[0] = Tensor(DType::float32, x.shape());
    const float* src = x.data<float>();
    float* dst = out[0].data<float>();
    ctx.parallel_for(x.numel(), 1 << 16, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t i = b; i < e; ++i) dst[i] = f(src[i]);
    });
}

#define BPUQ_UNARY_FLOAT_OP(fn_name, expr)                                                                   \
    inline void fn_name(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,       \
                        const ExecContext& ctx, std::int64_t) {                                              \
        unary_float(n, in, out, ctx, [](float x) { return expr; });                                          \
    }

BPUQ_UNARY_FLOAT_OP(run_sigmoid, 1.f / (1.f + std::exp(-x)))
BPUQ_UNARY_FLOAT_OP(run_tanh, std::tanh(x))
BPUQ_UNARY_FLOAT_OP(run_exp, std::exp(x))
BPUQ_UNARY_FLOAT_OP(run_sqrt, std::sqrt(x))
BPUQ_UNARY_FLOAT_OP(run_erf, std::erf(x))
BPUQ_UNARY_FLOAT_OP(run_hardswish, x * std::max(0.f, std::min(1.f, x / 6.f + 0.5f)))
// softplus = log(1 + e^x), written to stay finite for large x
BPUQ_UNARY_FLOAT_OP(run_softplus, x > 0.f ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)))
#undef BPUQ_UNARY_FLOAT_OP

inline void run_relu(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                     const ExecContext& ctx, std::int64_t) {
    const Tensor& x = need(n, in, 0);
    if (x.dtype() == DType::float32) {
        unary_float(n, in, out, ctx, [](float v) { return v > 0.f ? v : 0.f; });
        return;
    }
    out[0] = Tensor(x.dtype(), x.shape());
    dispatch_numeric(n, x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const T* s = x.data<T>();
        T* d = out[0].data<T>();
        for (std::int64_t i = 0; i < x.numel(); ++i) d[i] = s[i] > T(0) ? s[i] : T(0);
    });
}

inline void run_leaky_relu(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                           const ExecContext& ctx, std::int64_t) {
    const float alpha = n.attr_float("alpha", 0.01f);
    unary_float(n, in, out, ctx, [alpha](float x) { return x >= 0.f ? x : alpha * x; });
}
inline void run_hard_sigmoid(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                             const ExecContext& ctx, std::int64_t) {
    const float alpha = n.attr_float("alpha", 0.2f), beta = n.attr_float("beta", 0.5f);
    unary_float(n, in, out, ctx, [=](float x) { return std::max(0.f, std::min(1.f, alpha * x + beta)); });
}
inline void run_gelu(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                     const ExecContext& ctx, std::int64_t) {
    const std::string approx = n.attr_string("approximate", "none");
    if (approx == "tanh") {
        const float k = std::sqrt(2.f / 3.14159265358979f);
        unary_float(n, in, out, ctx,
                    [k](float x) { return 0.5f * x * (1.f + std::tanh(k * (x + 0.044715f * x * x * x))); });
    } else {
        BPUQ_CHECK(approx == "none", "graph.attribute",
                   n.describe() + " approximate='" + approx + "'; allowed: none, tanh");
        unary_float(n, in, out, ctx, [](float x) { return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f)); });
    }
}

/// Clip: bounds from attributes (opset < 11) or optional inputs 1 and 2; any numeric type.
inline void run_clip(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                     const ExecContext& ctx, std::int64_t opset) {
    const Tensor& x = need(n, in, 0);
    out[0] = Tensor(x.dtype(), x.shape());
    dispatch_numeric(n, x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T lo = std::numeric_limits<T>::lowest(), hi = std::numeric_limits<T>::max();
        if (opset < 11) {
            lo = static_cast<T>(n.attr_float("min", -std::numeric_limits<float>::max()));
            hi = static_cast<T>(n.attr_float("max", std::numeric_limits<float>::max()));
        } else {
            if (const Tensor* t = opt(in, 1)) {
                BPUQ_CHECK(t->numel() == 1 && t->dtype() == x.dtype(), "graph.input",
                           n.describe() + " min must be a scalar of the input's type");
                lo = t->data<T>()[0];
            }
            if (const Tensor* t = opt(in, 2)) {
                BPUQ_CHECK(t->numel() == 1 && t->dtype() == x.dtype(), "graph.input",
                           n.describe() + " max must be a scalar of the input's type");
                hi = t->data<T>()[0];
            }
        }
        const T* s = x.data<T>();
        T* d = out[0].data<T>();
        ctx.parallel_for(x.numel(), 1 << 16, [&](std::int64_t b, std::int64_t e) {
            for (std::int64_t i = b; i < e; ++i) d[i] = std::min(hi, std::max(lo, s[i]));
        });
    });
}

// ---- broadcasting binary arithmetic ----
enum class BinaryKind { add, sub, mul, div, pow, prelu };

template <class T>
inline T binary_apply(BinaryKind k, T a, T b) {
    switch (k) {
        case BinaryKind::add: return static_cast<T>(a + b);
        case BinaryKind::sub: return static_cast<T>(a - b);
        case BinaryKind::mul: return static_cast<T>(a * b);
        case BinaryKind::div:
            if constexpr (std::is_integral<T>::value) return b == T(0) ? T(0) : static_cast<T>(a / b);
            else return a / b;
        case BinaryKind::prelu: return a < T(0) ? static_cast<T>(a * b) : a;
        case BinaryKind::pow: return static_cast<T>(std::pow(static_cast<double>(a), static_cast<double>(b)));
    }
    return a;
}

template <class T>
void binary_typed(BinaryKind kind, const Tensor& a, const Tensor& b, Tensor& out, const ExecContext& ctx) {
    const T* pa = a.data<T>();
    const T* pb = b.data<T>();
    T* po = out.data<T>();
    const std::int64_t n = out.numel();
    if (a.shape() == b.shape()) {  // the common case in CNNs (residual adds)
        ctx.parallel_for(n, 1 << 15, [&](std::int64_t s, std::int64_t e) {
            if constexpr (std::is_same<T, float>::value) {
                switch (kind) {
                    case BinaryKind::add: for (std::int64_t i = s; i < e; ++i) po[i] = pa[i] + pb[i]; return;
                    case BinaryKind::mul: for (std::int64_t i = s; i < e; ++i) po[i] = pa[i] * pb[i]; return;
                    default: break;
                }
            }
            for (std::int64_t i = s; i < e; ++i) po[i] = binary_apply<T>(kind, pa[i], pb[i]);
        });
        return;
    }
    const std::array<Shape, 2> st = {broadcast_strides(a.shape(), out.shape()), broadcast_strides(b.shape(), out.shape())};
    std::int64_t o = 0;
    for_each_broadcast_row<2>(out.shape(), st, [&](std::int64_t cnt, const std::array<std::int64_t, 2>& off,
                                                   const std::array<std::int64_t, 2>& inner) {
        const T* x = pa + off[0];
        const T* y = pb + off[1];
        if (inner[1] == 0) {
            const T yv = *y;
            for (std::int64_t i = 0; i < cnt; ++i) po[o + i] = binary_apply<T>(kind, x[i * inner[0]], yv);
        } else {
            for (std::int64_t i = 0; i < cnt; ++i) po[o + i] = binary_apply<T>(kind, x[i * inner[0]], y[i * inner[1]]);
        }
        o += cnt;
    });
}

/// Reads element i of a numeric tensor as double (Pow with mixed base/exponent types).
inline double element_as_double(const Node& n, const Tensor& t, std::int64_t i) {
    double r = 0;
    dispatch_numeric(n, t.dtype(), [&](auto tag) { r = static_cast<double>(t.data<decltype(tag)>()[i]); });
    return r;
}

inline void run_binary(BinaryKind kind, const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                       const ExecContext& ctx) {
    const Tensor& a = need(n, in, 0);
    const Tensor& b = need(n, in, 1);
    const Shape shape = broadcast_shapes(n, a.shape(), b.shape());
    if (kind == BinaryKind::pow && a.dtype() != b.dtype()) {
        // Pow allows the exponent's type to differ; the result has the base's type.
        out[0] = Tensor(a.dtype(), shape);
        const Tensor bb = [&] {
            Tensor c(a.dtype(), b.shape());
            dispatch_numeric(n, a.dtype(), [&](auto tag) {
                using T = decltype(tag);
                for (std::int64_t i = 0; i < b.numel(); ++i) c.data<T>()[i] = static_cast<T>(element_as_double(n, b, i));
            });
            return c;
        }();
        // exponent converted to the base type is exact for the integer exponents ONNX tests use;
        // a fractional exponent with an integer base is computed in double below instead.
        if (!is_floating(a.dtype()) && is_floating(b.dtype())) {
            const std::array<Shape, 2> st = {broadcast_strides(a.shape(), shape), broadcast_strides(b.shape(), shape)};
            std::int64_t o = 0;
            dispatch_numeric(n, a.dtype(), [&](auto tag) {
                using T = decltype(tag);
                T* po = out[0].data<T>();
                for_each_broadcast_row<2>(shape, st, [&](std::int64_t cnt, const std::array<std::int64_t, 2>& off,
                                                         const std::array<std::int64_t, 2>& inner) {
                    for (std::int64_t i = 0; i < cnt; ++i)
                        po[o + i] = static_cast<T>(std::pow(element_as_double(n, a, off[0] + i * inner[0]),
                                                            element_as_double(n, b, off[1] + i * inner[1])));
                    o += cnt;
                });
            });
            return;
        }
        dispatch_numeric(n, a.dtype(), [&](auto tag) { binary_typed<decltype(tag)>(kind, a, bb, out[0], ctx); });
        return;
    }
    BPUQ_CHECK(a.dtype() == b.dtype(), "graph.dtype",
               n.describe() + " inputs have different types " + dtype_name(a.dtype()) + " and " + dtype_name(b.dtype()));
    out[0] = Tensor(a.dtype(), shape);
    dispatch_numeric(n, a.dtype(), [&](auto tag) { binary_typed<decltype(tag)>(kind, a, b, out[0], ctx); });
}

#define BPUQ_BINARY_OP(fn_name, kind)                                                                         \
    inline void fn_name(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,        \
                        const ExecContext& ctx, std::int64_t) {                                               \
        run_binary(kind, n, in, out, ctx);                                                                    \
    }
BPUQ_BINARY_OP(run_add, BinaryKind::add)
BPUQ_BINARY_OP(run_sub, BinaryKind::sub)
BPUQ_BINARY_OP(run_mul, BinaryKind::mul)
BPUQ_BINARY_OP(run_div, BinaryKind::div)
BPUQ_BINARY_OP(run_pow, BinaryKind::pow)
BPUQ_BINARY_OP(run_prelu, BinaryKind::prelu)
#undef BPUQ_BINARY_OP

}  // namespace ops
}  // namespace graph

BPUQ_NAMESPACE_END
