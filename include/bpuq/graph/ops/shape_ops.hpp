// Data-movement operators (any element type): Reshape, Flatten, Transpose, Squeeze,
// Unsqueeze, Concat, Split, Slice, Gather, Shape, Identity, Dropout, Constant, Pad.
#pragma once

#include <random>

#include "common.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {
namespace ops {

inline DType in_dtype(const std::vector<InferInput>& in, std::size_t i = 0) {
    return i < in.size() && in[i].present() && in[i].value->has_dtype ? in[i].value->dtype : DType::float32;
}
inline bool in_has_dtype(const std::vector<InferInput>& in, std::size_t i = 0) {
    return i < in.size() && in[i].present() && in[i].value->has_dtype;
}

// ---- Reshape ----
inline Shape reshape_target(const Node& n, const Shape& in, const std::vector<std::int64_t>& spec, bool allowzero) {
    Shape out(spec.size());
    std::int64_t known = 1, infer_at = -1;
    for (std::size_t i = 0; i < spec.size(); ++i) {
        std::int64_t d = spec[i];
        if (d == 0 && !allowzero) {
            BPUQ_CHECK(i < in.size(), "graph.shape", n.describe() + " shape has 0 at axis " + std::to_string(i) +
                                                         " beyond the input's rank " + std::to_string(in.size()));
            d = in[i];
        }
        if (d == -1) {
            BPUQ_CHECK(infer_at < 0, "graph.shape", n.describe() + " shape has more than one -1");
            infer_at = static_cast<std::int64_t>(i);
            continue;
        }
        BPUQ_CHECK(d >= 0, "graph.shape", n.describe() + " shape has invalid dim " + std::to_string(d));
        out[i] = d;
        known *= d;
    }
    const std::int64_t total = shape_numel(in);
    if (infer_at >= 0) {
        BPUQ_CHECK(known > 0 && total % known == 0, "graph.shape",
                   n.describe() + " cannot infer -1 reshaping " + shape_to_string(in));
        out[static_cast<std::size_t>(infer_at)] = total / known;
    }
    BPUQ_CHECK(shape_numel(out) == total, "graph.shape",
               n.describe() + " cannot reshape " + shape_to_string(in) + " (" + std::to_string(total) + " elements) to " +
                   shape_to_string(out));
    return out;
}
inline void infer_reshape(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t opset) {
    if (in_has_dtype(in)) set_output_dtype(out, 0, in_dtype(in));
    std::vector<std::int64_t> spec;
    if (opset < 5) spec = n.attr_ints("shape");
    else if (in.size() > 1 && in[1].constant) spec = to_int64s(n, *in[1].constant, "shape");
    else return;
    if (!in[0].known_shape()) return;
    for (auto d : in[0].shape())
        if (d < 0) return;
    set_output(out, 0, in_dtype(in), reshape_target(n, in[0].shape(), spec, n.attr_int("allowzero", 0) != 0));
}
inline void run_reshape(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                        const ExecContext&, std::int64_t opset) {
    const Tensor& x = need(n, in, 0);
    const std::vector<std::int64_t> spec = opset < 5 ? n.attr_ints("shape") : to_int64s(n, need(n, in, 1), "shape");
    out[0] = x.reshaped(reshape_target(n, x.shape(), spec, n.attr_int("allowzero", 0) != 0));
}

// ---- Flatten ----
inline Shape flatten_shape(const Node& n, const Shape& s) {
    const std::int64_t r = static_cast<std::int64_t>(s.size());
    std::int64_t axis = n.attr_int("axis", 1);
    BPUQ_CHECK(axis >= -r && axis <= r, "graph.axis", n.describe() + " axis " + std::to_string(axis) + " out of range");
    if (axis < 0) axis += r;
    std::vector<std::int64_t> v(s.begin(), s.end());
    return {product(v, 0, std::size_t(axis)), product(v, std::size_t(axis))};
}
inline void infer_flatten(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    if (in_has_dtype(in)) set_output_dtype(out, 0, in_dtype(in));
    if (in[0].known_shape()) set_output(out, 0, in_dtype(in), flatten_shape(n, in[0].shape()));
}
inline void run_flatten(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                        const ExecContext&, std::int64_t) {
    const Tensor& x = need(n, in, 0);
    out[0] = x.reshaped(flatten_shape(n, x.shape()));
}

// ---- Identity / Dropout ----
inline void infer_identity(const Node&, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    if (in.empty() || !in[0].present()) return;
    if (in_has_dtype(in)) set_output_dtype(out, 0, in_dtype(in));
    if (in[0].known_shape()) {
        set_output(out, 0, in_dtype(in), in[0].shape());
        set_output(out, 1, DType::boolean, in[0].shape());
    }
}
inline void run_identity(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                         const ExecContext&, std::int64_t) {
    out[0] = need(n, in, 0);
}
/// Inference-mode Dropout is the identity (mask all true). Training mode draws the keep
/// mask the way ONNX's reference does (NumPy's legacy RandomState(seed).uniform, i.e.
/// MT19937 seeded with init_genrand and 53-bit doubles), so a model with a `seed` gives
/// the same mask as onnx's reference; kept values are scaled by 1 / (1 - ratio).
inline void run_dropout(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                        const ExecContext&, std::int64_t opset) {
    const Tensor& x = need(n, in, 0);
    bool training = false;
    float ratio = opset < 12 ? n.attr_float("ratio", 0.5f) : 0.5f;
    if (const Tensor* t = opt(in, 2)) {
        BPUQ_CHECK(t->dtype() == DType::boolean && t->numel() == 1, "graph.dtype",
                   n.describe() + " training_mode must be a bool scalar");
        training = t->data<bool>()[0];
    }
    if (const Tensor* r = opt(in, 1)) ratio = to_floats(n, *r, "ratio")[0];
    const bool drop = training && ratio > 0.f;
    if (drop) {
        check_float(n, x, "input");
        BPUQ_CHECK(ratio < 1.f, "graph.attribute", n.describe() + " ratio must be below 1 in training mode");
    }
    std::vector<bool> keep;
    if (drop) {
        std::mt19937 gen(static_cast<std::uint32_t>(n.attr_int("seed", 0)));
        keep.resize(static_cast<std::size_t>(x.numel()));
        for (auto&& k : keep) {
            const std::uint32_t a = gen() >> 5, b = gen() >> 6;
            k = (double(a) * 67108864.0 + double(b)) / 9007199254740992.0 >= double(ratio);
        }
        out[0] = Tensor(DType::float32, x.shape());
        const float scale = 1.f / (1.f - ratio);
        for (std::int64_t i = 0; i < x.numel(); ++i)
            out[0].data<float>()[i] = keep[std::size_t(i)] ? x.data<float>()[i] * scale : 0.f;
    } else {
        out[0] = x;
    }
    if (out.size() > 1) {
        out[1] = Tensor(DType::boolean, x.shape());
        for (std::int64_t i = 0; i < x.numel(); ++i) out[1].data<bool>()[i] = drop ? bool(keep[std::size_t(i)]) : true;
    }
}

// ---- Transpose ----
inline std::vector<std::int64_t> transpose_perm(const Node& n, std::size_t rank) {
    std::vector<std::int64_t> perm = n.attr_ints("perm");
    if (perm.empty()) {
        perm.resize(rank);
        for (std::size_t i = 0; i < rank; ++i) perm[i] = static_cast<std::int64_t>(rank - 1 - i);
    }
    BPUQ_CHECK(perm.size() == rank, "graph.attribute",
               n.describe() + " perm has " + std::to_string(perm.size()) + " entries for rank " + std::to_string(rank));
    std::vector<bool> seen(rank, false);
    for (auto& p : perm) {
        p = norm_axis(n, p, static_cast<std::int64_t>(rank));
        BPUQ_CHECK(!seen[std::size_t(p)], "graph.attribute", n.describe() + " perm repeats an axis");
        seen[std::size_t(p)] = true;
    }
    return perm;
}
inline void infer_transpose(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    if (in_has_dtype(in)) set_output_dtype(out, 0, in_dtype(in));
    if (!in[0].known_shape()) return;
    const auto perm = transpose_perm(n, in[0].shape().size());
    Shape s(perm.size());
    for (std::size_t i = 0; i < perm.size(); ++i) s[i] = in[0].shape()[std::size_t(perm[i])];
    set_output(out, 0, in_dtype(in), s);
}
inline void run_transpose(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                          const ExecContext&, std::int64_t) {
    const Tensor& x = need(n, in, 0);
    const auto perm = transpose_perm(n, x.rank());
    const std::size_t r = x.rank();
    Shape os(r), src_strides(r);
    const Shape xs = contiguous_strides(x.shape());
    for (std::size_t i = 0; i < r; ++i) {
        os[i] = x.dim(std::size_t(perm[i]));
        src_strides[i] = xs[std::size_t(perm[i])];
    }
    out[0] = Tensor(x.dtype(), os);
    const std::size_t es = dtype_size(x.dtype());
    const auto* src = static_cast<const std::uint8_t*>(x.raw());
    auto* dst = static_cast<std::uint8_t*>(out[0].raw());
    std::int64_t o = 0;
    for_each_broadcast_row<1>(os, {src_strides}, [&](std::int64_t cnt, const std::array<std::int64_t, 1>& off,
                                                     const std::array<std::int64_t, 1>& inner) {
        for (std::int64_t i = 0; i < cnt; ++i)
            std::memcpy(dst + (o + i) * es, src + (off[0] + i * inner[0]) * es, es);
        o += cnt;
    });
}

// ---- Squeeze / Unsqueeze ----
inline std::vector<std::int64_t> axes_from(const Node& n, const std::vector<const Tensor*>& in, std::int64_t opset,
                                           std::int64_t since_input_opset, std::size_t input_index) {
    if (opset < since_input_opset) return n.attr_ints("axes");
    const Tensor* t = opt(in, input_index);
    return t ? to_int64s(n, *t, "axes") : std::vector<std::int64_t>{};
}
inline Shape squeeze_shape(const Node& n, const Shape& s, std::vector<std::int64_t> axes) {
    const std::int64_t r = static_cast<std::int64_t>(s.size());
    std::vector<bool> drop(s.size(), false);
    if (axes.empty()) {
        for (std::size_t i = 0; i < s.size(); ++i) drop[i] = s[i] == 1;
    } else {
        for (auto a : axes) {
            a = norm_axis(n, a, r);
            BPUQ_CHECK(s[std::size_t(a)] == 1, "graph.shape",
                       n.describe() + " cannot squeeze axis " + std::to_string(a) + " of " + shape_to_string(s));
            drop[std::size_t(a)] = true;
        }
    }
    Shape o;
    for (std::size_t i = 0; i < s.size(); ++i)
        if (!drop[i]) o.push_back(s[i]);
    return o;
}
inline Shape unsqueeze_shape(const Node& n, const Shape& s, std::vector<std::int64_t> axes) {
    const std::int64_t r = static_cast<std::int64_t>(s.size() + axes.size());
    std::vector<bool> ins(std::size_t(r), false);
    for (auto a : axes) {
        a = norm_axis(n, a, r);
        BPUQ_CHECK(!ins[std::size_t(a)], "graph.attribute", n.describe() + " axes repeat " + std::to_string(a));
        ins[std::size_t(a)] = true;
    }
    Shape o;
    std::size_t j = 0;
    for (std::int64_t i = 0; i < r; ++i) o.push_back(ins[std::size_t(i)] ? 1 : s[j++]);
    return o;
}
template <bool Squeeze>
void infer_squeeze(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t opset) {
    if (in_has_dtype(in)) set_output_dtype(out, 0, in_dtype(in));
    if (!in[0].known_shape()) return;
    std::vector<std::int64_t> axes;
    if (opset < 13) axes = n.attr_ints("axes");
    else if (in.size() > 1 && in[1].present()) {
        if (!in[1].constant) return;
        axes = to_int64s(n, *in[1].constant, "axes");
    }
    set_output(out, 0, in_dtype(in), Squeeze ? squeeze_shape(n, in[0].shape(), axes) : unsqueeze_shape(n, in[0].shape(), axes));
}
template <bool Squeeze>
void run_squeeze(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out, const ExecContext&,
                 std::int64_t opset) {
    const Tensor& x = need(n, in, 0);
    const auto axes = axes_from(n, in, opset, 13, 1);
    out[0] = x.reshaped(Squeeze ? squeeze_shape(n, x.shape(), axes) : unsqueeze_shape(n, x.shape(), axes));
}

// ---- Concat ----
inline void infer_concat(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    if (in_has_dtype(in)) set_output_dtype(out, 0, in_dtype(in));
    for (const auto& i : in)
        if (!i.known_shape()) return;
    Shape s = in[0].shape();
    const std::int64_t axis = norm_axis(n, n.attr_int("axis", 0), std::int64_t(s.size()));
    for (std::size_t i = 1; i < in.size(); ++i) {
        BPUQ_CHECK(in[i].shape().size() == s.size(), "graph.shape", n.describe() + " inputs have different ranks");
        s[std::size_t(axis)] += in[i].shape()[std::size_t(axis)];
    }
    set_output(out, 0, in_dtype(in), s);
}
inline void run_concat(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                       const ExecContext&, std::int64_t) {
    const Tensor& first = need(n, in, 0);
    const std::int64_t r = static_cast<std::int64_t>(first.rank());
    const std::size_t axis = std::size_t(norm_axis(n, n.attr_int("axis", 0), r));
    Shape s = first.shape();
    s[axis] = 0;
    for (std::size_t i = 0; i < in.size(); ++i) {
        const Tensor& t = need(n, in, i);
        BPUQ_CHECK(t.rank() == first.rank() && t.dtype() == first.dtype(), "graph.shape",
                   n.describe() + " input #" + std::to_string(i) + " differs in rank or type");
        for (std::size_t d = 0; d < s.size(); ++d)
            BPUQ_CHECK(d == axis || t.dim(d) == first.dim(d), "graph.shape",
                       n.describe() + " input shapes " + shape_to_string(first.shape()) + " and " +
                           shape_to_string(t.shape()) + " differ outside axis " + std::to_string(axis));
        s[axis] += t.dim(axis);
    }
    out[0] = Tensor(first.dtype(), s);
    const std::size_t es = dtype_size(first.dtype());
    const std::int64_t outer = product(std::vector<std::int64_t>(s.begin(), s.begin() + std::ptrdiff_t(axis)));
    const std::int64_t inner = product(std::vector<std::int64_t>(s.begin() + std::ptrdiff_t(axis) + 1, s.end()));
    auto* dst = static_cast<std::uint8_t*>(out[0].raw());
    const std::size_t row = std::size_t(s[axis] * inner) * es;
    std::size_t col = 0;
    for (const Tensor* t : in) {
        const std::size_t chunk = std::size_t(t->dim(axis) * inner) * es;
        const auto* src = static_cast<const std::uint8_t*>(t->raw());
        for (std::int64_t o = 0; o < outer; ++o) std::memcpy(dst + std::size_t(o) * row + col, src + std::size_t(o) * chunk, chunk);
        col += chunk;
    }
}

// ---- Split ----
inline std::vector<std::int64_t> split_sizes(const Node& n, std::int64_t dim, std::size_t outputs,
                                             const std::vector<std::int64_t>& given) {
    if (!given.empty()) {
        std::int64_t sum = 0;
        for (auto v : given) sum += v;
        BPUQ_CHECK(given.size() == outputs && sum == dim, "graph.shape",
                   n.describe() + " split sizes do not add up to " + std::to_string(dim) + " over " +
                       std::to_string(outputs) + " outputs");
        return given;
    }
    const std::int64_t parts = n.attr_int("num_outputs", static_cast<std::int64_t>(outputs));
    BPUQ_CHECK(parts > 0, "graph.attribute", n.describe() + " needs at least one output");
    const std::int64_t chunk = (dim + parts - 1) / parts;  // opset 18: the last chunk may be smaller
    std::vector<std::int64_t> r(outputs, chunk);
    if (n.has_attr("num_outputs")) r.back() = dim - chunk * (parts - 1);
    else
        BPUQ_CHECK(dim % parts == 0, "graph.shape",
                   n.describe() + " cannot split " + std::to_string(dim) + " evenly into " + std::to_string(parts));
    return r;
}
inline void infer_split(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t opset) {
    for (std::size_t i = 0; i < out.size(); ++i)
        if (in_has_dtype(in)) set_output_dtype(out, i, in_dtype(in));
    if (!in[0].known_shape()) return;
    const Shape& s = in[0].shape();
    const std::size_t axis = std::size_t(norm_axis(n, n.attr_int("axis", 0), std::int64_t(s.size())));
    std::vector<std::int64_t> given;
    if (opset < 13) given = n.attr_ints("split");
    else if (in.size() > 1 && in[1].present()) {
        if (!in[1].constant) return;
        given = to_int64s(n, *in[1].constant, "split");
    }
    const auto sizes = split_sizes(n, s[axis], out.size(), given);
    for (std::size_t i = 0; i < out.size(); ++i) {
        Shape o = s;
        o[axis] = sizes[i];
        set_output(out, i, in_dtype(in), o);
    }
}
inline void run_split(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                      const ExecContext&, std::int64_t opset) {
    const Tensor& x = need(n, in, 0);
    const std::size_t axis = std::size_t(norm_axis(n, n.attr_int("axis", 0), std::int64_t(x.rank())));
    std::vector<std::int64_t> given;
    if (opset < 13) given = n.attr_ints("split");
    else if (const Tensor* t = opt(in, 1)) given = to_int64s(n, *t, "split");
    const auto sizes = split_sizes(n, x.dim(axis), out.size(), given);
    const std::size_t es = dtype_size(x.dtype());
    const Shape& s = x.shape();
    const std::int64_t outer = product(std::vector<std::int64_t>(s.begin(), s.begin() + std::ptrdiff_t(axis)));
    const std::int64_t inner = product(std::vector<std::int64_t>(s.begin() + std::ptrdiff_t(axis) + 1, s.end()));
    const auto* src = static_cast<const std::uint8_t*>(x.raw());
    const std::size_t row = std::size_t(s[axis] * inner) * es;
    std::size_t col = 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
        Shape o = s;
        o[axis] = sizes[i];
        out[i] = Tensor(x.dtype(), o);
        const std::size_t chunk = std::size_t(sizes[i] * inner) * es;
        auto* dst = static_cast<std::uint8_t*>(out[i].raw());
        for (std::int64_t r = 0; r < outer; ++r) std::memcpy(dst + std::size_t(r) * chunk, src + std::size_t(r) * row + col, chunk);
        col += chunk;
    }
}

// ---- Slice ----
struct SliceSpec {
    Shape out;
    std::vector<std::int64_t> start, step;  // per axis of the input
};
inline SliceSpec slice_spec(const Node& n, const Shape& s, const std::vector<std::int64_t>& starts,
                            const std::vector<std::int64_t>& ends, std::vector<std::int64_t> axes,
                            std::vector<std::int64_t> steps) {
    const std::int64_t r = static_cast<std::int64_t>(s.size());
    if (axes.empty())
        for (std::size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<std::int64_t>(i));
    if (steps.empty()) steps.assign(starts.size(), 1);
    BPUQ_CHECK(starts.size() == ends.size() && axes.size() == starts.size() && steps.size() == starts.size(),
               "graph.shape", n.describe() + " starts/ends/axes/steps have different lengths");
    SliceSpec sp;
    sp.out = s;
    sp.start.assign(s.size(), 0);
    sp.step.assign(s.size(), 1);
    for (std::size_t i = 0; i < axes.size(); ++i) {
        const std::size_t a = std::size_t(norm_axis(n, axes[i], r));
        const std::int64_t dim = s[a], step = steps[i];
        BPUQ_CHECK(step != 0, "graph.attribute", n.describe() + " has a zero step");
        std::int64_t b = starts[i], e = ends[i];
        if (b < 0) b += dim;
        if (e < 0) e += dim;
        if (step > 0) {
            b = std::max<std::int64_t>(0, std::min(b, dim));
            e = std::max<std::int64_t>(0, std::min(e, dim));
            sp.out[a] = e > b ? (e - b + step - 1) / step : 0;
        } else {
            b = std::max<std::int64_t>(-1, std::min(b, dim - 1));
            e = std::max<std::int64_t>(-1, std::min(e, dim - 1));
            sp.out[a] = b > e ? (b - e - step - 1) / -step : 0;
        }
        sp.start[a] = b;
        sp.step[a] = step;
    }
    return sp;
}
inline void slice_args(const Node& n, const std::vector<const Tensor*>& in, std::int64_t opset,
                       std::vector<std::int64_t>& starts, std::vector<std::int64_t>& ends,
                       std::vector<std::int64_t>& axes, std::vector<std::int64_t>& steps) {
    if (opset < 10) {
        starts = n.attr_ints("starts");
        ends = n.attr_ints("ends");
        axes = n.attr_ints("axes");
        return;
    }
    starts = to_int64s(n, need(n, in, 1), "starts");
    ends = to_int64s(n, need(n, in, 2), "ends");
    if (const Tensor* t = opt(in, 3)) axes = to_int64s(n, *t, "axes");
    if (const Tensor* t = opt(in, 4)) steps = to_int64s(n, *t, "steps");
}
inline void infer_slice(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t opset) {
    if (in_has_dtype(in)) set_output_dtype(out, 0, in_dtype(in));
    if (!in[0].known_shape()) return;
    std::vector<const Tensor*> consts(in.size(), nullptr);
    for (std::size_t i = 1; i < in.size(); ++i) {
        if (in[i].present() && !in[i].constant) return;
        consts[i] = in[i].constant;
    }
    std::vector<std::int64_t> starts, ends, axes, steps;
    slice_args(n, consts, opset, starts, ends, axes, steps);
    set_output(out, 0, in_dtype(in), slice_spec(n, in[0].shape(), starts, ends, axes, steps).out);
}
inline void run_slice(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                      const ExecContext&, std::int64_t opset) {
    const Tensor& x = need(n, in, 0);
    std::vector<std::int64_t> starts, ends, axes, steps;
    slice_args(n, in, opset, starts, ends, axes, steps);
    const SliceSpec sp = slice_spec(n, x.shape(), starts, ends, axes, steps);
    out[0] = Tensor(x.dtype(), sp.out);
    if (out[0].numel() == 0) return;
    const Shape xs = contiguous_strides(x.shape());
    Shape st(x.rank());
    std::int64_t base = 0;
    for (std::size_t i = 0; i < x.rank(); ++i) {
        st[i] = xs[i] * sp.step[i];
        base += sp.start[i] * xs[i];
    }
    const std::size_t es = dtype_size(x.dtype());
    const auto* src = static_cast<const std::uint8_t*>(x.raw());
    auto* dst = static_cast<std::uint8_t*>(out[0].raw());
    std::int64_t o = 0;
    for_each_broadcast_row<1>(sp.out, {st}, [&](std::int64_t cnt, const std::array<std::int64_t, 1>& off,
                                                const std::array<std::int64_t, 1>& inner) {
        for (std::int64_t i = 0; i < cnt; ++i)
            std::memcpy(dst + (o + i) * es, src + (base + off[0] + i * inner[0]) * es, es);
        o += cnt;
    });
}

// ---- Gather ----
inline void infer_gather(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    if (in_has_dtype(in)) set_output_dtype(out, 0, in_dtype(in));
    if (!in[0].known_shape() || !in[1].known_shape()) return;
    const Shape& s = in[0].shape();
    const std::size_t axis = std::size_t(norm_axis(n, n.attr_int("axis", 0), std::int64_t(s.size())));
    Shape o(s.begin(), s.begin() + std::ptrdiff_t(axis));
    o.insert(o.end(), in[1].shape().begin(), in[1].shape().end());
    o.insert(o.end(), s.begin() + std::ptrdiff_t(axis) + 1, s.end());
    set_output(out, 0, in_dtype(in), o);
}
inline void run_gather(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                       const ExecContext&, std::int64_t) {
    const Tensor& x = need(n, in, 0);
    const Tensor& idx = need(n, in, 1);
    const std::size_t axis = std::size_t(norm_axis(n, n.attr_int("axis", 0), std::int64_t(x.rank())));
    const std::vector<std::int64_t> ind = to_int64s(n, idx, "indices");
    const Shape& s = x.shape();
    Shape o(s.begin(), s.begin() + std::ptrdiff_t(axis));
    o.insert(o.end(), idx.shape().begin(), idx.shape().end());
    o.insert(o.end(), s.begin() + std::ptrdiff_t(axis) + 1, s.end());
    out[0] = Tensor(x.dtype(), o);
    const std::size_t es = dtype_size(x.dtype());
    const std::int64_t outer = product(std::vector<std::int64_t>(s.begin(), s.begin() + std::ptrdiff_t(axis)));
    const std::int64_t inner = product(std::vector<std::int64_t>(s.begin() + std::ptrdiff_t(axis) + 1, s.end()));
    const std::int64_t dim = s[axis];
    const auto* src = static_cast<const std::uint8_t*>(x.raw());
    auto* dst = static_cast<std::uint8_t*>(out[0].raw());
    const std::size_t chunk = std::size_t(inner) * es;
    for (std::int64_t a = 0; a < outer; ++a)
        for (std::size_t k = 0; k < ind.size(); ++k) {
            std::int64_t i = ind[k];
            if (i < 0) i += dim;
            BPUQ_CHECK(i >= 0 && i < dim, "graph.index",
                       n.describe() + " index " + std::to_string(ind[k]) + " is outside [-" + std::to_string(dim) + ", " +
                           std::to_string(dim) + ")");
            std::memcpy(dst + (std::size_t(a) * ind.size() + k) * chunk, src + std::size_t(a * dim + i) * chunk, chunk);
        }
}

// ---- Shape ----
inline std::pair<std::int64_t, std::int64_t> shape_range(const Node& n, std::int64_t r) {
    std::int64_t b = n.attr_int("start", 0), e = n.attr_int("end", r);
    if (b < 0) b += r;
    if (e < 0) e += r;
    b = std::max<std::int64_t>(0, std::min(b, r));
    e = std::max<std::int64_t>(0, std::min(e, r));
    return {b, std::max(b, e)};
}
inline void infer_shape_op(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    set_output_dtype(out, 0, DType::int64);
    if (!in[0].known_shape()) return;
    const auto be = shape_range(n, std::int64_t(in[0].shape().size()));
    set_output(out, 0, DType::int64, {be.second - be.first});
}
inline void run_shape(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                      const ExecContext&, std::int64_t) {
    const Tensor& x = need(n, in, 0);
    const auto be = shape_range(n, std::int64_t(x.rank()));
    out[0] = Tensor(DType::int64, {be.second - be.first});
    for (std::int64_t i = be.first; i < be.second; ++i) out[0].data<std::int64_t>()[i - be.first] = x.dim(std::size_t(i));
}

// ---- Constant ----
inline Tensor constant_value(const Node& n) {
    if (n.has_attr("value")) return n.attr("value", Attribute::Kind::tensor).t;
    if (n.has_attr("value_float")) return Tensor::from_vector<float>({}, {n.attr_float("value_float", 0.f)});
    if (n.has_attr("value_floats")) {
        auto v = n.attr_floats("value_floats");
        return Tensor::from_vector<float>({std::int64_t(v.size())}, v);
    }
    if (n.has_attr("value_int")) return Tensor::from_vector<std::int64_t>({}, {n.attr_int("value_int", 0)});
    if (n.has_attr("value_ints")) {
        auto v = n.attr_ints("value_ints");
        return Tensor::from_vector<std::int64_t>({std::int64_t(v.size())}, v);
    }
    BPUQ_THROW("graph.attribute", n.describe() +
                                      " has none of value, value_float(s), value_int(s) (sparse and string constants are "
                                      "not supported)");
}
inline void infer_constant(const Node& n, const std::vector<InferInput>&, std::vector<Value>& out, std::int64_t) {
    const Tensor t = constant_value(n);
    set_output(out, 0, t.dtype(), t.shape());
}
inline void run_constant(const Node& n, const std::vector<const Tensor*>&, std::vector<Tensor>& out,
                         const ExecContext&, std::int64_t) {
    out[0] = constant_value(n);
}

// ---- Pad ----
inline std::vector<std::int64_t> pad_amounts(const Node& n, const std::vector<const Tensor*>& in, std::size_t rank,
                                             std::int64_t opset) {
    std::vector<std::int64_t> pads = opset < 11 ? n.attr_ints("pads") : to_int64s(n, need(n, in, 1), "pads");
    std::vector<std::int64_t> axes;
    if (const Tensor* t = opset >= 18 ? opt(in, 3) : nullptr) axes = to_int64s(n, *t, "axes");
    if (axes.empty()) {
        BPUQ_CHECK(pads.size() == 2 * rank, "graph.shape",
                   n.describe() + " has " + std::to_string(pads.size()) + " pads for rank " + std::to_string(rank));
        return pads;
    }
    BPUQ_CHECK(pads.size() == 2 * axes.size(), "graph.shape", n.describe() + " pads do not match axes");
    std::vector<std::int64_t> full(2 * rank, 0);
    for (std::size_t i = 0; i < axes.size(); ++i) {
        const std::size_t a = std::size_t(norm_axis(n, axes[i], std::int64_t(rank)));
        full[a] = pads[i];
        full[a + rank] = pads[i + axes.size()];
    }
    return full;
}
inline void infer_pad(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t opset) {
    if (in_has_dtype(in)) set_output_dtype(out, 0, in_dtype(in));
    if (!in[0].known_shape()) return;
    std::vector<const Tensor*> consts(in.size(), nullptr);
    for (std::size_t i = 1; i < in.size(); ++i) {
        if (in[i].present() && !in[i].constant) return;
        consts[i] = in[i].constant;
    }
    const Shape& s = in[0].shape();
    const auto pads = pad_amounts(n, consts, s.size(), opset);
    Shape o = s;
    for (std::size_t i = 0; i < s.size(); ++i) o[i] += pads[i] + pads[i + s.size()];
    set_output(out, 0, in_dtype(in), o);
}
inline void run_pad(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out, const ExecContext&,
                    std::int64_t opset) {
    const Tensor& x = need(n, in, 0);
    const std::size_t r = x.rank();
    const auto pads = pad_amounts(n, in, r, opset);
    const std::string mode = n.attr_string("mode", "constant");
    BPUQ_CHECK(mode == "constant" || mode == "reflect" || mode == "edge" || mode == "wrap", "graph.attribute",
               n.describe() + " mode '" + mode + "'; allowed: constant, reflect, edge, wrap");
    Shape os = x.shape();
    for (std::size_t i = 0; i < r; ++i) {
        os[i] += pads[i] + pads[i + r];
        BPUQ_CHECK(os[i] >= 0, "graph.shape", n.describe() + " pads make a negative dimension");
    }
    out[0] = Tensor(x.dtype(), os);
    dispatch_all(n, x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        T cval = T(0);
        if (opset < 11) cval = static_cast<T>(n.attr_float("value", 0.f));
        else if (const Tensor* c = opt(in, 2)) {
            if (c->numel()) {
                BPUQ_CHECK(c->dtype() == x.dtype(), "graph.dtype", n.describe() + " constant_value type differs");
                cval = c->data<T>()[0];
            }
        }
        const T* src = x.data<T>();
        T* dst = out[0].data<T>();
        const Shape xs = contiguous_strides(x.shape());
        std::vector<std::int64_t> idx(r, 0);
        for (std::int64_t o = 0; o < out[0].numel(); ++o) {
            std::int64_t rem = o, off = 0;
            bool inside = true;
            for (std::size_t d = r; d-- > 0;) {
                idx[d] = rem % os[d];
                rem /= os[d];
            }
            for (std::size_t d = 0; d < r && inside; ++d) {
                std::int64_t i = idx[d] - pads[d];
                const std::int64_t dim = x.dim(d);
                if (i < 0 || i >= dim) {
                    if (mode == "constant" || dim == 0) inside = false;
                    else if (mode == "edge") i = i < 0 ? 0 : dim - 1;
                    else if (mode == "wrap") i = ((i % dim) + dim) % dim;
                    else {  // reflect without repeating the edge
                        const std::int64_t period = 2 * (dim - 1);
                        if (period == 0) i = 0;
                        else {
                            i = ((i % period) + period) % period;
                            if (i >= dim) i = period - i;
                        }
                    }
                }
                off += i * xs[d];
            }
            dst[o] = inside ? src[off] : cval;
        }
    });
}

}  // namespace ops
}  // namespace graph

BPUQ_NAMESPACE_END
