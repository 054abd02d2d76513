// Helpers shared by the float executor's operators: the op function signatures, dtype
// dispatch, axis handling, broadcasting and reading small constant tensors.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "../../core/config.hpp"
#include "../../core/dtype.hpp"
#include "../../core/error.hpp"
#include "../../core/tensor.hpp"
#include "../context.hpp"
#include "../ir.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {

/// What shape inference knows about one input: its Value (dtype/shape, may be partial) and,
/// when the input is a constant, its data.
struct InferInput {
    const Value* value = nullptr;    ///< nullptr for an omitted optional input
    const Tensor* constant = nullptr;
    bool present() const { return value != nullptr; }
    bool known_shape() const { return value && value->has_shape; }
    const Shape& shape() const { return value->shape; }
};

/// Shape inference of one node: fills dtype/shape of each output Value it can determine.
using InferFn = void (*)(const Node&, const std::vector<InferInput>&, std::vector<Value>&, std::int64_t opset);
/// Execution of one node: inputs (nullptr for omitted optional ones) -> outputs.
using RunFn = void (*)(const Node&, const std::vector<const Tensor*>&, std::vector<Tensor>&, const ExecContext&,
                       std::int64_t opset);

namespace ops {

/// Output storage for kernels that write every element (no zero-fill).
inline Tensor new_output(DType t, Shape s) { return Tensor(t, std::move(s), Tensor::Uninitialized{}); }

inline void set_output(std::vector<Value>& outs, std::size_t i, DType t, Shape s) {
    if (i >= outs.size()) return;
    outs[i].dtype = t;
    outs[i].has_dtype = true;
    outs[i].shape = std::move(s);
    outs[i].has_shape = true;
}
inline void set_output_dtype(std::vector<Value>& outs, std::size_t i, DType t) {
    if (i >= outs.size()) return;
    outs[i].dtype = t;
    outs[i].has_dtype = true;
}

/// Input `i` must be present: an error naming the node otherwise.
inline const Tensor& need(const Node& n, const std::vector<const Tensor*>& in, std::size_t i) {
    BPUQ_CHECK(i < in.size() && in[i] != nullptr, "graph.input",
               n.describe() + " needs input #" + std::to_string(i) + " but it is missing");
    return *in[i];
}
inline const Tensor* opt(const std::vector<const Tensor*>& in, std::size_t i) {
    return i < in.size() ? in[i] : nullptr;
}

inline void check_float(const Node& n, const Tensor& t, const char* what) {
    BPUQ_CHECK(t.dtype() == DType::float32, "graph.dtype",
               n.describe() + " " + what + " is " + dtype_name(t.dtype()) + "; this operator supports float32 only");
}

/// Normalizes a possibly negative axis for a tensor of rank `rank`.
inline std::int64_t norm_axis(const Node& n, std::int64_t axis, std::int64_t rank) {
    BPUQ_CHECK(axis >= -rank && axis < std::max<std::int64_t>(rank, 1), "graph.axis",
               n.describe() + " axis " + std::to_string(axis) + " is outside [-" + std::to_string(rank) + ", " +
                   std::to_string(rank) + ")");
    return axis < 0 ? axis + rank : axis;
}

/// Integer contents of a small int32/int64 tensor (shapes, axes, pads...).
inline std::vector<std::int64_t> to_int64s(const Node& n, const Tensor& t, const char* what) {
    std::vector<std::int64_t> r(static_cast<std::size_t>(t.numel()));
    if (t.dtype() == DType::int64) {
        std::copy(t.data<std::int64_t>(), t.data<std::int64_t>() + t.numel(), r.begin());
    } else if (t.dtype() == DType::int32) {
        std::copy(t.data<std::int32_t>(), t.data<std::int32_t>() + t.numel(), r.begin());
    } else {
        BPUQ_THROW("graph.dtype", n.describe() + " " + what + " must be int64 or int32, got " + dtype_name(t.dtype()));
    }
    return r;
}
inline std::vector<float> to_floats(const Node& n, const Tensor& t, const char* what) {
    BPUQ_CHECK(t.dtype() == DType::float32, "graph.dtype",
               n.describe() + " " + what + " must be float32, got " + dtype_name(t.dtype()));
    return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
}

/// Calls f(T{}) with T the C++ type of `t`.
template <class F>
void dispatch_all(const Node& n, DType t, F&& f) {
    switch (t) {
        case DType::float32: f(float{}); return;
        case DType::float64: f(double{}); return;
        case DType::int8: f(std::int8_t{}); return;
        case DType::uint8: f(std::uint8_t{}); return;
        case DType::int16: f(std::int16_t{}); return;
        case DType::uint16: f(std::uint16_t{}); return;
        case DType::int32: f(std::int32_t{}); return;
        case DType::uint32: f(std::uint32_t{}); return;
        case DType::int64: f(std::int64_t{}); return;
        case DType::uint64: f(std::uint64_t{}); return;
        case DType::boolean: f(bool{}); return;
        default: break;
    }
    BPUQ_THROW("graph.dtype", n.describe() + " does not support element type " + dtype_name(t));
}
/// Like dispatch_all without bool (arithmetic).
template <class F>
void dispatch_numeric(const Node& n, DType t, F&& f) {
    BPUQ_CHECK(t != DType::boolean, "graph.dtype", n.describe() + " does not support bool tensors");
    dispatch_all(n, t, [&](auto v) {
        if constexpr (!std::is_same<decltype(v), bool>::value) f(v);
    });
}

/// Numpy-style broadcast of two shapes (an error naming the node if they do not fit).
inline Shape broadcast_shapes(const Node& n, const Shape& a, const Shape& b) {
    const std::size_t r = std::max(a.size(), b.size());
    Shape out(r);
    for (std::size_t i = 0; i < r; ++i) {
        const std::int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
        const std::int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
        if (da == db || db == 1) out[i] = da;
        else if (da == 1) out[i] = db;
        else if (da < 0 || db < 0) out[i] = -1;  // unknown at inference time
        else
            BPUQ_THROW("graph.broadcast", n.describe() + " cannot broadcast shapes " + shape_to_string(a) + " and " +
                                              shape_to_string(b));
    }
    return out;
}

/// Strides (in elements) that read a tensor of shape `s` as if broadcast to `out`.
inline Shape broadcast_strides(const Shape& s, const Shape& out) {
    Shape st(out.size(), 0);
    const Shape cs = contiguous_strides(s);
    const std::size_t off = out.size() - s.size();
    for (std::size_t i = 0; i < s.size(); ++i) st[off + i] = s[i] == 1 ? 0 : cs[i];
    return st;
}

/// Visits every element of a broadcast over `out` with up to three operands: calls
/// body(count, offsets..., inner strides...) for each innermost row.
template <std::size_t K, class F>
void for_each_broadcast_row(const Shape& out, const std::array<Shape, K>& strides, F&& body) {
    const std::size_t r = out.size();
    if (r == 0) {
        std::array<std::int64_t, K> off{}, inner{};
        body(1, off, inner);
        return;
    }
    const std::int64_t inner_n = out[r - 1];
    std::array<std::int64_t, K> inner{};
    for (std::size_t k = 0; k < K; ++k) inner[k] = strides[k][r - 1];
    std::int64_t rows = 1;
    for (std::size_t i = 0; i + 1 < r; ++i) rows *= out[i];
    if (inner_n == 0) return;
    std::vector<std::int64_t> idx(r, 0);
    std::array<std::int64_t, K> off{};
    for (std::int64_t row = 0; row < rows; ++row) {
        body(inner_n, off, inner);
        for (std::size_t d = r - 1; d-- > 0;) {
            ++idx[d];
            for (std::size_t k = 0; k < K; ++k) off[k] += strides[k][d];
            if (idx[d] < out[d]) break;
            for (std::size_t k = 0; k < K; ++k) off[k] -= strides[k][d] * out[d];
            idx[d] = 0;
        }
    }
}

/// Spatial geometry of a Conv/Pool: pads (begin.., end..), output dims.
struct WindowGeometry {
    std::vector<std::int64_t> kernel, strides, dilations, pads, out;
};

/// Computes output dims and effective pads for a sliding window over `in_spatial`
/// (ONNX auto_pad NOTSET/SAME_UPPER/SAME_LOWER/VALID and ceil_mode).
inline WindowGeometry window_geometry(const Node& n, const std::vector<std::int64_t>& in_spatial,
                                      std::vector<std::int64_t> kernel, bool ceil_mode = false) {
    const std::size_t d = in_spatial.size();
    WindowGeometry g;
    g.kernel = std::move(kernel);
    BPUQ_CHECK(g.kernel.size() == d, "graph.attribute",
               n.describe() + " kernel has " + std::to_string(g.kernel.size()) + " dims but the input has " +
                   std::to_string(d) + " spatial dims");
    g.strides = n.attr_ints("strides", std::vector<std::int64_t>(d, 1));
    g.dilations = n.attr_ints("dilations", std::vector<std::int64_t>(d, 1));
    g.pads = n.attr_ints("pads", std::vector<std::int64_t>(2 * d, 0));
    BPUQ_CHECK(g.strides.size() == d && g.dilations.size() == d && g.pads.size() == 2 * d, "graph.attribute",
               n.describe() + " strides/dilations/pads do not match " + std::to_string(d) + " spatial dims");
    const std::string auto_pad = n.attr_string("auto_pad", "NOTSET");
    g.out.resize(d);
    for (std::size_t i = 0; i < d; ++i) {
        BPUQ_CHECK(g.strides[i] > 0 && g.dilations[i] > 0 && g.kernel[i] > 0, "graph.attribute",
                   n.describe() + " needs positive kernel, strides and dilations");
        const std::int64_t ek = (g.kernel[i] - 1) * g.dilations[i] + 1;
        if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
            const std::int64_t o = (in_spatial[i] + g.strides[i] - 1) / g.strides[i];
            const std::int64_t total = std::max<std::int64_t>(0, (o - 1) * g.strides[i] + ek - in_spatial[i]);
            g.pads[i] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
            g.pads[i + d] = total - g.pads[i];
            g.out[i] = o;
            continue;
        }
        if (auto_pad == "VALID") g.pads[i] = g.pads[i + d] = 0;
        else
            BPUQ_CHECK(auto_pad == "NOTSET", "graph.attribute",
                       n.describe() + " auto_pad '" + auto_pad + "' is not NOTSET, SAME_UPPER, SAME_LOWER or VALID");
        const std::int64_t span = in_spatial[i] + g.pads[i] + g.pads[i + d] - ek;
        BPUQ_CHECK(span >= 0, "graph.shape",
                   n.describe() + " window is larger than the padded input along spatial axis " + std::to_string(i));
        std::int64_t o = (ceil_mode ? (span + g.strides[i] - 1) / g.strides[i] : span / g.strides[i]) + 1;
        // ceil_mode: the last window must start inside the input or left padding
        if (ceil_mode && (o - 1) * g.strides[i] >= in_spatial[i] + g.pads[i]) --o;
        g.out[i] = o;
    }
    return g;
}

inline std::int64_t product(const std::vector<std::int64_t>& v, std::size_t from = 0, std::size_t to = SIZE_MAX) {
    const std::size_t end = std::min(to, v.size());
    if (from >= end) return 1;
    // iterator form: GCC 12 misreads the index loop as unbounded (-Waggressive-loop-optimizations)
    return std::accumulate(v.begin() + std::ptrdiff_t(from), v.begin() + std::ptrdiff_t(end), std::int64_t(1),
                           std::multiplies<std::int64_t>());
}

}  // namespace ops
}  // namespace graph

BPUQ_NAMESPACE_END
