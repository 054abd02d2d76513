// The host emulator of an integer Program: every node is prepared once (weights packed, tables and
// multipliers unpacked into kernel parameters) and then run with the SIMD kernels or, on request,
// the scalar reference kernels — the two give identical bits. 4-D integer tensors live in NHWC
// inside the emulator; the program's semantics (and its inputs/outputs) are NCHW.
#pragma once

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../graph/op_registry.hpp"
#include "../kernels/reference.hpp"
#include "../kernels/simd/conv2d.hpp"
#include "../kernels/simd/pooling.hpp"
#include "../kernels/simd/quantize.hpp"
#include "../kernels/simd/concat_resize.hpp"
#include "program.hpp"

BPUQ_NAMESPACE_BEGIN
namespace emul {

struct ExecutorOptions {
    int threads = 1;
    bool use_simd = true;  ///< false: scalar reference kernels (the normative semantics)
};

/// Called after each node with the node and its outputs in logical (NCHW) layout.
using ProgramNodeCallback = std::function<void(const ProgramNode&, const std::vector<Tensor>&)>;

namespace detail {

inline bool stored_nhwc(const ProgramTensor& t) {
    return t.shape.size() == 4 && (t.dtype == DType::int8 || t.dtype == DType::int16 || t.dtype == DType::int32);
}

inline Shape nhwc_shape(const Shape& s) { return {s[0], s[2], s[3], s[1]}; }

template <class T>
void convert_layout(const Tensor& in, Tensor& out, bool to_nhwc, const Shape& logical) {
    const int n = int(logical[0]), c = int(logical[1]), h = int(logical[2]), w = int(logical[3]);
    if (to_nhwc) nchw_to_nhwc(in.data<T>(), out.data<T>(), n, c, h, w);
    else nhwc_to_nchw(in.data<T>(), out.data<T>(), n, c, h, w);
}

/// NHWC <-> NCHW for the integer dtypes of program tensors.
inline Tensor relayout(const Tensor& in, const Shape& logical, bool to_nhwc) {
    Tensor out(in.dtype(), to_nhwc ? nhwc_shape(logical) : logical, Tensor::Uninitialized{});
    switch (in.dtype()) {
        case DType::int8: convert_layout<std::int8_t>(in, out, to_nhwc, logical); break;
        case DType::int16: convert_layout<std::int16_t>(in, out, to_nhwc, logical); break;
        case DType::int32: convert_layout<std::int32_t>(in, out, to_nhwc, logical); break;
        default: BPUQ_THROW("emul.layout", std::string("no layout conversion for ") + dtype_name(in.dtype()));
    }
    return out;
}

inline const AttrValue& need_attr(const ProgramNode& n, const char* key) {
    const AttrValue* a = n.attr(key);
    BPUQ_CHECK(a != nullptr, "emul.attribute", "program node '" + n.name + "' (" + n.op + ") lacks attribute '" + key + "'");
    return *a;
}
inline std::int64_t attr_i(const ProgramNode& n, const char* key) {
    const AttrValue& a = need_attr(n, key);
    BPUQ_CHECK(a.kind == AttrValue::Kind::ints && a.ints.size() == 1, "emul.attribute",
               "program node '" + n.name + "' attribute '" + key + "' must be one integer");
    return a.ints[0];
}
/// A string attribute that must be one of `allowed`; returns its index there.
inline std::size_t attr_choice(const ProgramNode& n, const char* key, const std::vector<std::string>& allowed) {
    const AttrValue& a = need_attr(n, key);
    std::string list;
    for (std::size_t i = 0; i < allowed.size(); ++i) {
        if (a.kind == AttrValue::Kind::string && a.str == allowed[i]) return i;
        list += (i ? ", " : "") + allowed[i];
    }
    BPUQ_THROW("emul.attribute", "program node '" + n.name + "' attribute '" + key + "' is '" + a.str + "'; allowed: " + list);
    return allowed.size();  // not reached
}
inline const std::vector<std::int64_t>& attr_is(const ProgramNode& n, const char* key, std::size_t expected = 0) {
    const AttrValue& a = need_attr(n, key);
    BPUQ_CHECK(a.kind == AttrValue::Kind::ints && (expected == 0 || a.ints.size() == expected), "emul.attribute",
               "program node '" + n.name + "' attribute '" + key + "' must be " +
                   (expected ? std::to_string(expected) + " integers" : std::string("a list of integers")));
    return a.ints;
}
inline std::vector<QuantizedMultiplier> multipliers(const ProgramNode& n, std::size_t expected = 0) {
    const auto& m = attr_is(n, "multiplier", expected);
    const auto& s = attr_is(n, "shift", m.size());
    std::vector<QuantizedMultiplier> out(m.size());
    for (std::size_t i = 0; i < m.size(); ++i) {
        BPUQ_CHECK(m[i] >= 0 && m[i] < (std::int64_t(1) << 31) && s[i] >= -31 && s[i] <= 30, "emul.attribute",
                   "program node '" + n.name + "' has a multiplier/shift outside the fixed-point range");
        out[i] = QuantizedMultiplier{static_cast<std::int32_t>(m[i]), static_cast<int>(s[i])};
    }
    return out;
}

template <class T>
std::vector<T> constant_values(const ProgramTensor& t) {
    std::vector<T> v(t.data.size() / sizeof(T));
    std::memcpy(v.data(), t.data.data(), v.size() * sizeof(T));
    return v;
}

}  // namespace detail

/// Runs a Program. Construction validates node attributes against the tensors and prepares every
/// node; run() is const and may be called from several threads at once.
class ProgramExecutor {
public:
    explicit ProgramExecutor(Program p, ExecutorOptions opt = {}) : prog_(std::move(p)), opt_(opt) {
        kctx_ = KernelContext::with_threads(opt_.threads);
        // constants in storage layout once, not per run (steps only read them)
        constants_.resize(prog_.tensors.size());
        for (std::size_t i = 0; i < prog_.tensors.size(); ++i)
            if (prog_.tensors[i].is_constant) constants_[i] = constant_tensor(i);
        const auto r = prog_.metadata.find("rounding");
        half_even_ = r != prog_.metadata.end() && r->second == "half_to_even";
        for (const auto& n : prog_.nodes) {
            try {
                steps_.push_back(half_even_ ? prepare<RoundHalfToEven>(n) : prepare<RoundHalfAwayFromZero>(n));
            } catch (const Error& e) {
                if (std::string(e.what()).find(n.name) != std::string::npos) throw;
                BPUQ_THROW(e.id(), "program node '" + n.name + "' (" + n.op + "): " + e.what());
            }
        }
    }
    ProgramExecutor(const ProgramExecutor&) = delete;
    ProgramExecutor& operator=(const ProgramExecutor&) = delete;

    const Program& program() const { return prog_; }

    /// Inputs in program-input order, NCHW, with the dtype and shape of each program input.
    std::vector<Tensor> run(const std::vector<Tensor>& inputs, const ProgramNodeCallback& on_node = nullptr) const {
        BPUQ_CHECK(inputs.size() == prog_.inputs.size(), "emul.input",
                   "the program has " + std::to_string(prog_.inputs.size()) + " inputs, got " + std::to_string(inputs.size()));
        std::vector<Tensor> slots(prog_.tensors.size());
        for (std::size_t i = 0; i < prog_.tensors.size(); ++i)
            if (prog_.tensors[i].is_constant) slots[i] = constants_[i];  // shared, read-only
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            const auto id = static_cast<std::size_t>(prog_.inputs[i]);
            const ProgramTensor& t = prog_.tensors[id];
            BPUQ_CHECK(inputs[i].dtype() == t.dtype && inputs[i].shape() == t.shape, "emul.input",
                       "program input '" + t.name + "' needs " + dtype_name(t.dtype) + " " + shape_to_string(t.shape) + ", got " +
                           dtype_name(inputs[i].dtype()) + " " + shape_to_string(inputs[i].shape()));
            slots[id] = detail::stored_nhwc(t) ? detail::relayout(inputs[i], t.shape, true) : inputs[i];
        }
        for (std::size_t k = 0; k < steps_.size(); ++k) {
            steps_[k](slots);
            if (on_node) {
                std::vector<Tensor> outs;
                for (auto id : prog_.nodes[k].outputs) outs.push_back(logical(slots, id));
                on_node(prog_.nodes[k], outs);
            }
        }
        std::vector<Tensor> out;
        for (auto id : prog_.outputs) out.push_back(logical(slots, id));
        return out;
    }

private:
    using Step = std::function<void(std::vector<Tensor>&)>;

    const ProgramTensor& t_(std::int32_t id) const { return prog_.tensors[static_cast<std::size_t>(id)]; }
    Tensor logical(const std::vector<Tensor>& slots, std::int32_t id) const {
        const ProgramTensor& t = t_(id);
        const Tensor& s = slots[static_cast<std::size_t>(id)];
        return detail::stored_nhwc(t) ? detail::relayout(s, t.shape, false) : s;
    }
    Tensor store(Tensor logical_tensor, std::int32_t id) const {
        const ProgramTensor& t = t_(id);
        return detail::stored_nhwc(t) ? detail::relayout(logical_tensor, t.shape, true) : logical_tensor;
    }
    Tensor constant_tensor(std::size_t i) const {
        const ProgramTensor& t = prog_.tensors[i];
        Tensor c(t.dtype, t.shape);
        if (c.nbytes()) std::memcpy(c.raw(), t.data.data(), c.nbytes());
        return detail::stored_nhwc(t) ? detail::relayout(c, t.shape, true) : c;
    }
    QParams qparams(std::int32_t id) const { return qparams_of(t_(id)); }
    void expect_io(const ProgramNode& n, std::size_t ins, std::size_t outs) const {
        BPUQ_CHECK(n.inputs.size() == ins && n.outputs.size() == outs, "emul.node",
                   "program node '" + n.name + "' (" + n.op + ") needs " + std::to_string(ins) + " inputs and " +
                       std::to_string(outs) + " outputs");
        for (auto i : n.inputs) BPUQ_CHECK(i >= 0, "emul.node", "program node '" + n.name + "' has an omitted input");
    }
    void expect_quantized(const ProgramNode& n, std::int32_t id) const {
        const ProgramTensor& t = t_(id);
        BPUQ_CHECK((t.dtype == DType::int8 || t.dtype == DType::int16) && t.quant.bits != 0 && !t.quant.scales.empty(),
                   "emul.node", "program node '" + n.name + "' (" + n.op + ") needs a quantized int8/int16 tensor, '" + t.name +
                                    "' is " + dtype_name(t.dtype));
    }

    /// Calls fn(type tag) for the int8/int16 (and int32 where allowed) storage types.
    template <bool Allow32 = false, class Fn>
    static void dispatch_int(DType t, Fn&& fn) {
        if (t == DType::int8) fn(std::int8_t{});
        else if (t == DType::int16) fn(std::int16_t{});
        else if constexpr (Allow32) {
            if (t == DType::int32) fn(std::int32_t{});
            else BPUQ_THROW("emul.dtype", std::string("integer program outputs are int8/int16/int32, got ") + dtype_name(t));
        } else {
            BPUQ_THROW("emul.dtype", std::string("integer program tensors are int8/int16, got ") + dtype_name(t));
        }
    }

    template <class Round>
    Step prepare(const ProgramNode& n) {
        const std::string& op = n.op;
        if (op == "quantize") return prepare_quantize<Round>(n);
        if (op == "dequantize") return prepare_dequantize(n);
        if (op == "conv2d") return prepare_conv<Round>(n);
        if (op == "gemm") return prepare_gemm<Round>(n);
        if (op == "eltwise") return prepare_eltwise<Round>(n);
        if (op == "avgpool") return prepare_avgpool<Round>(n);
        if (op == "maxpool") return prepare_maxpool(n);
        if (op == "requantize") return prepare_requantize<Round>(n);
        if (op == "concat") return prepare_concat<Round>(n);
        if (op == "lut8" || op == "lut16") return prepare_lut<Round>(n);
        if (op == "reshape") return prepare_reshape(n);
        if (op == "transpose") return prepare_transpose(n);
        if (op == "resize") return prepare_resize<Round>(n);
        if (op == "float_op") return prepare_float_op(n);
        BPUQ_THROW("emul.op", "program node '" + n.name + "' has unknown op '" + op + "'");
    }

    template <class Round>
    Step prepare_quantize(const ProgramNode& n) {
        expect_io(n, 1, 1);
        const std::int32_t in = n.inputs[0], out = n.outputs[0];
        expect_quantized(n, out);
        BPUQ_CHECK(t_(in).dtype == DType::float32, "emul.node", "quantize '" + n.name + "' reads a non-float tensor");
        const QParams q = qparams(out);
        return [this, in, out, q](std::vector<Tensor>& s) {
            Tensor r = simd::quantize_tensor<simd::default_arch, Round>(s[std::size_t(in)], q);
            s[std::size_t(out)] = store(std::move(r), out);
        };
    }

    Step prepare_dequantize(const ProgramNode& n) {
        expect_io(n, 1, 1);
        const std::int32_t in = n.inputs[0], out = n.outputs[0];
        const QParams q = qparams(in);
        BPUQ_CHECK(q.bits != 0 && !q.scale.empty(), "emul.node", "dequantize '" + n.name + "' reads an unquantized tensor");
        return [this, in, out, q](std::vector<Tensor>& s) {
            const Tensor x = logical(s, in);
            if (x.dtype() == DType::int32) {  // int32 accumulators dequantized per channel
                Tensor y(DType::float32, x.shape());
                for_each_channel_run(x.shape(), q.axis, q.channels(), [&](std::size_t c, std::int64_t off, std::int64_t len) {
                    for (std::int64_t i = 0; i < len; ++i)
                        y.data<float>()[off + i] = static_cast<float>(x.data<std::int32_t>()[off + i] - q.zero_point[c]) * q.scale[c];
                });
                s[std::size_t(out)] = y;
            } else {
                s[std::size_t(out)] = simd::dequantize_tensor(x, q);
            }
        };
    }

    template <class Round>
    Step prepare_conv(const ProgramNode& n) {
        expect_io(n, 3, 1);
        const std::int32_t x = n.inputs[0], w = n.inputs[1], b = n.inputs[2], y = n.outputs[0];
        expect_quantized(n, x);
        const ProgramTensor &xt = t_(x), &wt = t_(w), &bt = t_(b), &yt = t_(y);
        BPUQ_CHECK(xt.shape.size() == 4 && wt.shape.size() == 4 && wt.is_constant &&
                       (wt.dtype == DType::int8 || wt.dtype == DType::int16) && bt.is_constant && bt.dtype == DType::int32,
                   "emul.node", "conv2d '" + n.name + "' needs NCHW input, constant int8 (or int16) OHWI weights and int32 bias");
        Conv2dGeometry g;
        g.batch = int(xt.shape[0]);
        g.in_c = int(xt.shape[1]);
        g.in_h = int(xt.shape[2]);
        g.in_w = int(xt.shape[3]);
        g.out_c = int(wt.shape[0]);
        const auto& k = detail::attr_is(n, "kernel", 2);
        const auto& st = detail::attr_is(n, "strides", 2);
        const auto& d = detail::attr_is(n, "dilations", 2);
        const auto& p = detail::attr_is(n, "pads", 4);
        g.kernel_h = int(k[0]);
        g.kernel_w = int(k[1]);
        g.stride_h = int(st[0]);
        g.stride_w = int(st[1]);
        g.dilation_h = int(d[0]);
        g.dilation_w = int(d[1]);
        g.pad_top = int(p[0]);
        g.pad_left = int(p[1]);
        g.pad_bottom = int(p[2]);
        g.pad_right = int(p[3]);
        g.groups = int(detail::attr_i(n, "group"));
        g.validate();
        BPUQ_CHECK(yt.shape == Shape({g.batch, g.out_c, g.out_h(), g.out_w()}), "emul.node",
                   "conv2d '" + n.name + "' output shape " + shape_to_string(yt.shape) + " does not match its geometry");
        auto state = std::make_shared<ConvState>();
        state->g = g;
        state->bias = detail::constant_values<std::int32_t>(bt);
        state->mult = detail::multipliers(n, std::size_t(g.out_c));
        if (wt.dtype == DType::int16) {  // int16 nodes, or the exact asymmetric weights of a loaded QDQ model
            state->ohwi16 = detail::constant_values<std::int16_t>(wt);
            state->packed = simd::PackedConvWeights::pack(g, state->ohwi16.data());
        } else {
            state->ohwi = detail::constant_values<std::int8_t>(wt);
            state->packed = simd::PackedConvWeights::pack(g, state->ohwi.data());
        }
        state->rq.bias = state->bias.data();
        state->rq.multipliers = state->mult.data();
        state->rq.per_channel = true;
        state->rq.zero_point = std::int32_t(detail::attr_i(n, "zp_out"));
        state->rq.lo = std::int32_t(detail::attr_i(n, "lo"));
        state->rq.hi = std::int32_t(detail::attr_i(n, "hi"));
        state->zp_in = std::int32_t(detail::attr_i(n, "zp_in"));
        const DType in_t = xt.dtype, out_t = yt.dtype;
        return [this, state, x, y, in_t, out_t](std::vector<Tensor>& s) {
            const ConvState& c = *state;
            Tensor out(out_t, detail::nhwc_shape(t_(y).shape), Tensor::Uninitialized{});  // every element written
            dispatch_int(in_t, [&](auto ti) {
                using TI = decltype(ti);
                dispatch_int<true>(out_t, [&](auto to) {
                    using TO = decltype(to);
                    const TI* src = s[std::size_t(x)].template data<TI>();
                    if (opt_.use_simd) simd::conv2d<simd::default_arch, Round>(kctx_, c.g, src, c.zp_in, c.packed, c.rq, out.data<TO>());
                    else if (!c.ohwi16.empty()) reference::conv2d<Round>(c.g, src, c.zp_in, c.ohwi16.data(), c.rq, out.data<TO>());
                    else reference::conv2d<Round>(c.g, src, c.zp_in, c.ohwi.data(), c.rq, out.data<TO>());
                });
            });
            s[std::size_t(y)] = std::move(out);
        };
    }

    template <class Round>
    Step prepare_gemm(const ProgramNode& n) {
        expect_io(n, 3, 1);
        const std::int32_t a = n.inputs[0], b = n.inputs[1], bias = n.inputs[2], y = n.outputs[0];
        expect_quantized(n, a);
        const ProgramTensor &at = t_(a), &bt = t_(b), &biast = t_(bias), &yt = t_(y);
        BPUQ_CHECK(at.shape.size() == 2 && bt.shape.size() == 2 && bt.is_constant && (bt.dtype == DType::int8 || bt.dtype == DType::int16) &&
                       at.shape[1] == bt.shape[1] && biast.is_constant && yt.shape == Shape({at.shape[0], bt.shape[0]}),
                   "emul.node", "gemm '" + n.name + "' needs A [M, K], constant int8 (or int16) B [N, K] and output [M, N]");
        auto state = std::make_shared<GemmState>();
        state->gg.m = int(at.shape[0]);
        state->gg.n = int(bt.shape[0]);
        state->gg.k = int(at.shape[1]);
        state->gg.validate();
        if (bt.dtype == DType::int16) {  // int16 nodes, or the exact asymmetric weights of a loaded QDQ model
            state->w16 = detail::constant_values<std::int16_t>(bt);
            state->packed = simd::pack_gemm_weights(state->gg.n, state->gg.k, state->w16.data());
        } else {
            state->w = detail::constant_values<std::int8_t>(bt);
            state->packed = simd::pack_gemm_weights(state->gg.n, state->gg.k, state->w.data());
        }
        state->bias = detail::constant_values<std::int32_t>(biast);
        state->mult = detail::multipliers(n, std::size_t(state->gg.n));
        state->rq.bias = state->bias.data();
        state->rq.multipliers = state->mult.data();
        state->rq.zero_point = std::int32_t(detail::attr_i(n, "zp_out"));
        state->rq.lo = std::int32_t(detail::attr_i(n, "lo"));
        state->rq.hi = std::int32_t(detail::attr_i(n, "hi"));
        state->zp_in = std::int32_t(detail::attr_i(n, "zp_in"));
        const DType in_t = at.dtype, out_t = yt.dtype;
        return [this, state, a, y, in_t, out_t](std::vector<Tensor>& s) {
            const GemmState& c = *state;
            Tensor out(out_t, t_(y).shape, Tensor::Uninitialized{});
            dispatch_int(in_t, [&](auto ti) {
                using TI = decltype(ti);
                dispatch_int<true>(out_t, [&](auto to) {
                    using TO = decltype(to);
                    const TI* src = s[std::size_t(a)].template data<TI>();
                    if (opt_.use_simd) simd::gemm<simd::default_arch, Round>(kctx_, c.gg, src, c.zp_in, c.packed, c.rq, out.data<TO>());
                    else if (!c.w16.empty()) reference::gemm<Round>(c.gg, src, c.zp_in, c.w16.data(), 0, c.rq, out.data<TO>());
                    else reference::gemm<Round>(c.gg, src, c.zp_in, c.w.data(), 0, c.rq, out.data<TO>());
                });
            });
            s[std::size_t(y)] = std::move(out);
        };
    }

    template <class Round>
    Step prepare_eltwise(const ProgramNode& n) {
        expect_io(n, 2, 1);
        const std::int32_t a = n.inputs[0], b = n.inputs[1], y = n.outputs[0];
        expect_quantized(n, a);
        expect_quantized(n, b);
        EltwiseParams p;
        p.op = static_cast<EltwiseOp>(detail::attr_i(n, "op"));
        p.zp_a = std::int32_t(detail::attr_i(n, "zp_a"));
        p.zp_b = std::int32_t(detail::attr_i(n, "zp_b"));
        p.zp_out = std::int32_t(detail::attr_i(n, "zp_out"));
        p.lo = std::int32_t(detail::attr_i(n, "lo"));
        p.hi = std::int32_t(detail::attr_i(n, "hi"));
        p.left_shift = int(detail::attr_i(n, "left_shift"));
        const auto m = detail::multipliers(n, 3);
        p.mult_a = m[0];
        p.mult_b = m[1];
        p.mult_out = m[2];
        const std::int64_t na = shape_numel(t_(a).shape), nb = shape_numel(t_(b).shape);
        BPUQ_CHECK(shape_numel(t_(y).shape) == na && (nb == na || nb == 1 || (t_(a).shape.size() >= 2 && nb == t_(a).shape[1])),
                   "emul.node", "eltwise '" + n.name + "' operand sizes do not fit its broadcast rules");
        // per-channel operands broadcast along the innermost axis of NHWC storage (or of [N, C])
        BPUQ_CHECK(nb == na || nb == 1 || detail::stored_nhwc(t_(a)) || t_(a).shape.size() == 2, "emul.node",
                   "eltwise '" + n.name + "' per-channel operand needs a 4-D or 2-D first operand");
        const DType ta = t_(a).dtype, tb = t_(b).dtype, ty = t_(y).dtype;
        return [this, p, a, b, y, na, nb, ta, tb, ty](std::vector<Tensor>& s) {
            Tensor out(ty, s[std::size_t(a)].shape(), Tensor::Uninitialized{});
            dispatch_int(ta, [&](auto xa) {
                dispatch_int(tb, [&](auto xb) {
                    dispatch_int(ty, [&](auto xy) {
                        using A = decltype(xa);
                        using B = decltype(xb);
                        using Y = decltype(xy);
                        if (opt_.use_simd)
                            simd::eltwise<simd::default_arch, Round>(s[std::size_t(a)].template data<A>(),
                                                                     s[std::size_t(b)].template data<B>(), na, nb, p, out.data<Y>());
                        else
                            reference::eltwise<Round>(s[std::size_t(a)].template data<A>(), s[std::size_t(b)].template data<B>(), na,
                                                      nb, p, out.data<Y>());
                    });
                });
            });
            s[std::size_t(y)] = std::move(out);
        };
    }

    Pool2dGeometry pool_geometry(const ProgramNode& n, std::int32_t x) const {
        const ProgramTensor& xt = t_(x);
        BPUQ_CHECK(xt.shape.size() == 4, "emul.node", "pooling '" + n.name + "' needs an NCHW input");
        Pool2dGeometry g;
        g.batch = int(xt.shape[0]);
        g.channels = int(xt.shape[1]);
        g.in_h = int(xt.shape[2]);
        g.in_w = int(xt.shape[3]);
        const auto& k = detail::attr_is(n, "kernel", 2);
        const auto& st = detail::attr_is(n, "strides", 2);
        const auto& p = detail::attr_is(n, "pads", 4);
        g.kernel_h = int(k[0]);
        g.kernel_w = int(k[1]);
        g.stride_h = int(st[0]);
        g.stride_w = int(st[1]);
        g.pad_top = int(p[0]);
        g.pad_left = int(p[1]);
        g.pad_bottom = int(p[2]);
        g.pad_right = int(p[3]);
        g.validate();
        return g;
    }

    template <class Round>
    Step prepare_avgpool(const ProgramNode& n) {
        expect_io(n, 1, 1);
        const std::int32_t x = n.inputs[0], y = n.outputs[0];
        expect_quantized(n, x);
        const Pool2dGeometry g = pool_geometry(n, x);
        auto r = std::make_shared<AverageRescale>();
        r->zp_in = std::int32_t(detail::attr_i(n, "zp_in"));
        r->zp_out = std::int32_t(detail::attr_i(n, "zp_out"));
        r->lo = std::int32_t(detail::attr_i(n, "lo"));
        r->hi = std::int32_t(detail::attr_i(n, "hi"));
        r->per_count = detail::multipliers(n, std::size_t(g.kernel_h) * std::size_t(g.kernel_w) + 1);
        const bool include_pad = detail::attr_i(n, "count_include_pad") != 0;
        const DType tx = t_(x).dtype, ty = t_(y).dtype;
        BPUQ_CHECK(t_(y).shape == Shape({g.batch, g.channels, g.out_h(), g.out_w()}), "emul.node",
                   "avgpool '" + n.name + "' output shape does not match its window");
        return [this, g, r, include_pad, x, y, tx, ty](std::vector<Tensor>& s) {
            Tensor out(ty, detail::nhwc_shape(t_(y).shape), Tensor::Uninitialized{});
            dispatch_int(tx, [&](auto a) {
                dispatch_int(ty, [&](auto b) {
                    using A = decltype(a);
                    using B = decltype(b);
                    if (opt_.use_simd)
                        simd::avg_pool2d<simd::default_arch, Round>(g, s[std::size_t(x)].template data<A>(), include_pad, *r,
                                                                    out.data<B>());
                    else
                        reference::avg_pool2d<Round>(g, s[std::size_t(x)].template data<A>(), include_pad, *r, out.data<B>());
                });
            });
            s[std::size_t(y)] = std::move(out);
        };
    }

    Step prepare_maxpool(const ProgramNode& n) {
        expect_io(n, 1, 1);
        const std::int32_t x = n.inputs[0], y = n.outputs[0];
        expect_quantized(n, x);
        const Pool2dGeometry g = pool_geometry(n, x);
        BPUQ_CHECK(t_(y).dtype == t_(x).dtype && t_(y).shape == Shape({g.batch, g.channels, g.out_h(), g.out_w()}), "emul.node",
                   "maxpool '" + n.name + "' output must keep the input type and match its window");
        const DType tx = t_(x).dtype;
        return [this, g, x, y, tx](std::vector<Tensor>& s) {
            Tensor out(tx, detail::nhwc_shape(t_(y).shape), Tensor::Uninitialized{});
            dispatch_int(tx, [&](auto a) {
                using A = decltype(a);
                if (opt_.use_simd) simd::max_pool2d<simd::default_arch>(g, s[std::size_t(x)].template data<A>(), out.data<A>());
                else reference::max_pool2d(g, s[std::size_t(x)].template data<A>(), out.data<A>());
            });
            s[std::size_t(y)] = std::move(out);
        };
    }

    /// Nearest / bilinear resize of H and W (NHWC storage), input and output on one grid.
    template <class Round>
    Step prepare_resize(const ProgramNode& n) {
        expect_io(n, 1, 1);
        const std::int32_t x = n.inputs[0], y = n.outputs[0];
        expect_quantized(n, x);
        const ProgramTensor &tx = t_(x), &ty = t_(y);
        BPUQ_CHECK(tx.shape.size() == 4 && ty.shape.size() == 4 && tx.shape[0] == ty.shape[0] && tx.shape[1] == ty.shape[1] &&
                       ty.shape[2] > 0 && ty.shape[3] > 0 && tx.dtype == ty.dtype && tx.quant.scales == ty.quant.scales &&
                       tx.quant.zero_points == ty.quant.zero_points && tx.quant.zero_points.size() == 1,
                   "emul.node",
                   "resize '" + n.name + "' maps a 4-D per-tensor quantized tensor to the same type, batch, channels and grid");
        const bool bilinear = detail::attr_choice(n, "mode", {"nearest", "linear"}) == 1;
        const auto coords = static_cast<ResizeCoordinates>(
            detail::attr_choice(n, "coordinate_transformation_mode", {"half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"}));
        const auto nearest = static_cast<ResizeNearest>(
            detail::attr_choice(n, "nearest_mode", {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}));
        const AttrValue& scales = detail::need_attr(n, "scales");
        BPUQ_CHECK(scales.kind == AttrValue::Kind::floats && scales.floats.size() == 2 && scales.floats[0] > 0.0f &&
                       scales.floats[1] > 0.0f && std::isfinite(scales.floats[0]) && std::isfinite(scales.floats[1]),
                   "emul.attribute", "resize '" + n.name + "' attribute 'scales' must be two positive finite floats (H, W)");
        const int batch = int(tx.shape[0]), c = int(tx.shape[1]), ih = int(tx.shape[2]), iw = int(tx.shape[3]);
        auto axes = std::make_shared<std::pair<ResizeAxis, ResizeAxis>>(
            ResizeAxis(ih, int(ty.shape[2]), coords, nearest, double(scales.floats[0])),
            ResizeAxis(iw, int(ty.shape[3]), coords, nearest, double(scales.floats[1])));
        const std::int32_t zp = tx.quant.zero_points[0];
        const DType dt = tx.dtype;
        return [this, axes, bilinear, batch, c, ih, iw, zp, x, y, dt](std::vector<Tensor>& s) {
            Tensor out(dt, detail::nhwc_shape(t_(y).shape), Tensor::Uninitialized{});
            dispatch_int(dt, [&](auto a) {
                using A = decltype(a);
                const A* in = s[std::size_t(x)].template data<A>();
                A* o = out.data<A>();
                if (!bilinear) simd::resize_nearest<simd::default_arch>(in, batch, ih, iw, c, axes->first, axes->second, o);
                else if (opt_.use_simd)
                    simd::resize_bilinear<simd::default_arch, Round>(in, batch, ih, iw, c, zp, axes->first, axes->second, o);
                else reference::resize_bilinear<Round>(in, batch, ih, iw, c, zp, axes->first, axes->second, o);
            });
            s[std::size_t(y)] = std::move(out);
        };
    }

    template <class Round>
    Step prepare_requantize(const ProgramNode& n) {
        expect_io(n, 1, 1);
        const std::int32_t x = n.inputs[0], y = n.outputs[0];
        expect_quantized(n, x);
        const QuantizedMultiplier m = detail::multipliers(n, 1)[0];
        const std::int32_t zp_in = std::int32_t(detail::attr_i(n, "zp_in")), zp_out = std::int32_t(detail::attr_i(n, "zp_out"));
        const std::int32_t lo = std::int32_t(detail::attr_i(n, "lo")), hi = std::int32_t(detail::attr_i(n, "hi"));
        BPUQ_CHECK(t_(x).shape == t_(y).shape, "emul.node", "requantize '" + n.name + "' must keep the shape");
        const DType tx = t_(x).dtype, ty = t_(y).dtype;
        return [this, m, zp_in, zp_out, lo, hi, x, y, tx, ty](std::vector<Tensor>& s) {
            Tensor out(ty, s[std::size_t(x)].shape(), Tensor::Uninitialized{});
            dispatch_int(tx, [&](auto a) {
                dispatch_int(ty, [&](auto b) {
                    using A = decltype(a);
                    using B = decltype(b);
                    simd::requantize_span<simd::default_arch, Round>(s[std::size_t(x)].template data<A>(), out.data<B>(),
                                                                    out.numel(), zp_in, m, zp_out, lo, hi);
                });
            });
            s[std::size_t(y)] = std::move(out);
        };
    }

    template <class Round>
    Step prepare_concat(const ProgramNode& n) {
        BPUQ_CHECK(!n.inputs.empty() && n.outputs.size() == 1, "emul.node", "concat '" + n.name + "' needs inputs and one output");
        const std::int32_t y = n.outputs[0];
        const ProgramTensor& yt = t_(y);
        std::int64_t axis = detail::attr_i(n, "axis");
        BPUQ_CHECK(axis >= 0 && axis < std::int64_t(yt.shape.size()), "emul.node", "concat '" + n.name + "' axis out of range");
        const auto mult = detail::multipliers(n, n.inputs.size());
        const auto& zps = detail::attr_is(n, "zp_in", n.inputs.size());
        const std::int32_t zp_out = std::int32_t(detail::attr_i(n, "zp_out"));
        for (auto i : n.inputs) {
            expect_quantized(n, i);
            BPUQ_CHECK(t_(i).dtype == yt.dtype && t_(i).shape.size() == yt.shape.size(), "emul.node",
                       "concat '" + n.name + "' inputs must have the output's type and rank");
        }
        // storage axis: NCHW axis a of a 4-D tensor is NHWC axis {0, 3, 1, 2}[a]
        Shape storage_shape = detail::stored_nhwc(yt) ? detail::nhwc_shape(yt.shape) : yt.shape;
        const std::int64_t saxis = detail::stored_nhwc(yt) ? std::int64_t(std::vector<int>{0, 3, 1, 2}[std::size_t(axis)]) : axis;
        std::int64_t outer = 1, inner = 1;
        for (std::int64_t i = 0; i < saxis; ++i) outer *= storage_shape[std::size_t(i)];
        for (std::size_t i = std::size_t(saxis) + 1; i < storage_shape.size(); ++i) inner *= storage_shape[i];
        std::vector<std::int64_t> slices;
        std::int64_t total = 0;
        for (auto i : n.inputs) {
            const Shape ss = detail::stored_nhwc(t_(i)) ? detail::nhwc_shape(t_(i).shape) : t_(i).shape;
            slices.push_back(ss[std::size_t(saxis)] * inner);
            total += ss[std::size_t(saxis)];
        }
        BPUQ_CHECK(total == storage_shape[std::size_t(saxis)], "emul.node", "concat '" + n.name + "' input extents do not add up");
        const std::vector<std::int32_t> ins = n.inputs;
        const std::vector<std::int64_t> zp_v = zps;
        const DType ty = yt.dtype;
        const std::int32_t qmin = qmin_of(yt.quant.bits), qmax = qmax_of(yt.quant.bits);
        return [this, ins, mult, zp_v, zp_out, qmin, qmax, slices, outer, y, ty, storage_shape](std::vector<Tensor>& s) {
            Tensor out(ty, storage_shape);
            dispatch_int(ty, [&](auto tag) {
                using T = decltype(tag);
                std::vector<ConcatInput<T>> in(ins.size());
                for (std::size_t k = 0; k < ins.size(); ++k) {
                    in[k].data = s[std::size_t(ins[k])].template data<T>();
                    in[k].slice = slices[k];
                    in[k].zero_point = std::int32_t(zp_v[k]);
                    in[k].multiplier = mult[k];
                    in[k].identity = zp_v[k] == zp_out && mult[k].multiplier == (1 << 30) && mult[k].shift == 1;
                }
                if (opt_.use_simd) simd::concat<simd::default_arch, Round>(in, outer, zp_out, qmin, qmax, out.data<T>());
                else reference::concat<Round>(in, outer, zp_out, qmin, qmax, out.data<T>());
            });
            s[std::size_t(y)] = std::move(out);
        };
    }

    template <class Round>
    Step prepare_lut(const ProgramNode& n) {
        expect_io(n, 1, 1);
        const std::int32_t x = n.inputs[0], y = n.outputs[0];
        expect_quantized(n, x);
        const auto& table = detail::attr_is(n, "table");
        const DType tx = t_(x).dtype, ty = t_(y).dtype;
        if (n.op == "lut8") {
            BPUQ_CHECK(tx == DType::int8 && table.size() == 256, "emul.node", "lut8 '" + n.name + "' needs int8 input and 256 entries");
            auto l8 = std::make_shared<LutInt8<std::int8_t>>();
            auto l16 = std::make_shared<LutInt8<std::int16_t>>();
            for (std::size_t i = 0; i < 256; ++i) {
                l8->table[i] = saturate_cast<std::int8_t>(table[i]);
                l16->table[i] = saturate_cast<std::int16_t>(table[i]);
            }
            return [this, l8, l16, x, y, ty](std::vector<Tensor>& s) {
                Tensor out(ty, s[std::size_t(x)].shape(), Tensor::Uninitialized{});
                const std::int8_t* in = s[std::size_t(x)].template data<std::int8_t>();
                if (ty == DType::int8 && opt_.use_simd) simd::apply_lut<simd::default_arch>(in, out.numel(), *l8, out.data<std::int8_t>());
                else if (ty == DType::int8) reference::apply_lut(in, out.numel(), *l8, out.data<std::int8_t>());
                else reference::apply_lut(in, out.numel(), *l16, out.data<std::int16_t>());
                s[std::size_t(y)] = std::move(out);
            };
        }
        BPUQ_CHECK(tx == DType::int16 && table.size() == 513, "emul.node", "lut16 '" + n.name + "' needs int16 input and 513 samples");
        auto l = std::make_shared<LutInt16<std::int16_t>>();
        auto l8 = std::make_shared<LutInt16<std::int8_t>>();
        for (std::size_t i = 0; i < 513; ++i) l->table[i] = l8->table[i] = std::int32_t(table[i]);
        l->qmin = l8->qmin = std::int32_t(detail::attr_i(n, "lo"));
        l->qmax = l8->qmax = std::int32_t(detail::attr_i(n, "hi"));
        return [this, l, l8, x, y, ty](std::vector<Tensor>& s) {
            Tensor out(ty, s[std::size_t(x)].shape(), Tensor::Uninitialized{});
            const std::int16_t* in = s[std::size_t(x)].template data<std::int16_t>();
            if (opt_.use_simd) {
                if (ty == DType::int16) simd::apply_lut<simd::default_arch, Round>(in, out.numel(), *l, out.data<std::int16_t>());
                else simd::apply_lut<simd::default_arch, Round>(in, out.numel(), *l8, out.data<std::int8_t>());
            } else if (ty == DType::int16) {
                reference::apply_lut<Round>(in, out.numel(), *l, out.data<std::int16_t>());
            } else {
                reference::apply_lut<Round>(in, out.numel(), *l8, out.data<std::int8_t>());
            }
            s[std::size_t(y)] = std::move(out);
        };
    }

    Step prepare_reshape(const ProgramNode& n) {
        expect_io(n, 1, 1);
        const std::int32_t x = n.inputs[0], y = n.outputs[0];
        BPUQ_CHECK(shape_numel(t_(x).shape) == shape_numel(t_(y).shape) && t_(x).dtype == t_(y).dtype, "emul.node",
                   "reshape '" + n.name + "' must keep the element count and type");
        return [this, x, y](std::vector<Tensor>& s) { s[std::size_t(y)] = store(logical(s, x).reshaped(t_(y).shape), y); };
    }

    Step prepare_transpose(const ProgramNode& n) {
        expect_io(n, 1, 1);
        const std::int32_t x = n.inputs[0], y = n.outputs[0];
        const auto& perm = detail::attr_is(n, "perm", t_(x).shape.size());
        Shape expect;
        for (auto p : perm) {
            BPUQ_CHECK(p >= 0 && p < std::int64_t(t_(x).shape.size()), "emul.node", "transpose '" + n.name + "' has a bad perm");
            expect.push_back(t_(x).shape[std::size_t(p)]);
        }
        BPUQ_CHECK(expect == t_(y).shape, "emul.node", "transpose '" + n.name + "' output shape does not match its perm");
        const std::vector<std::int64_t> pm = perm;
        return [this, x, y, pm](std::vector<Tensor>& s) {
            const Tensor in = logical(s, x);
            Tensor out(in.dtype(), t_(y).shape);
            const Shape is = in.shape(), istr = contiguous_strides(is), ostr = contiguous_strides(out.shape());
            const std::size_t es = dtype_size(in.dtype());
            const std::int64_t total = in.numel();
            const auto rank = pm.size();
            std::vector<std::int64_t> idx(rank, 0);
            const auto* src = static_cast<const std::uint8_t*>(in.raw());
            auto* dst = static_cast<std::uint8_t*>(out.raw());
            for (std::int64_t o = 0; o < total; ++o) {
                std::int64_t rem = o, off = 0;
                for (std::size_t d = 0; d < rank; ++d) {
                    const std::int64_t c = rem / ostr[d];
                    rem -= c * ostr[d];
                    off += c * istr[std::size_t(pm[d])];
                }
                std::memcpy(dst + std::size_t(o) * es, src + std::size_t(off) * es, es);
            }
            s[std::size_t(y)] = store(std::move(out), y);
        };
    }

    Step prepare_float_op(const ProgramNode& n) {
        auto node = std::make_shared<graph::Node>();
        node->name = n.name;
        const AttrValue* op = n.attr("op_type");
        BPUQ_CHECK(op && op->kind == AttrValue::Kind::string, "emul.attribute", "float_op '" + n.name + "' lacks op_type");
        node->op_type = op->str;
        if (const AttrValue* d = n.attr("domain")) node->domain = d->str;
        const std::int64_t opset = detail::attr_i(n, "opset");
        for (const auto& kv : n.attrs) {
            if (kv.first.size() < 3 || kv.first[1] != ':') continue;
            const std::string key = kv.first.substr(2);
            const AttrValue& a = kv.second;
            switch (kv.first[0]) {
                case 'i': node->attributes[key] = graph::Attribute::make_int(a.ints.at(0)); break;
                case 'I': node->attributes[key] = graph::Attribute::make_ints(a.ints); break;
                case 'f': node->attributes[key] = graph::Attribute::make_float(a.floats.at(0)); break;
                case 'F': node->attributes[key] = graph::Attribute::make_floats(a.floats); break;
                case 's': node->attributes[key] = graph::Attribute::make_string(a.str); break;
                default: BPUQ_THROW("emul.attribute", "float_op '" + n.name + "' has attribute '" + kv.first + "' of unknown kind");
            }
        }
        for (auto i : n.inputs) node->inputs.push_back(i < 0 ? std::string() : t_(i).name);
        for (auto o : n.outputs) node->outputs.push_back(t_(o).name);
        const graph::OpSchema* schema = &graph::require_op(*node, opset);
        const std::vector<std::int32_t> ins = n.inputs, outs = n.outputs;
        return [this, node, schema, ins, outs, opset](std::vector<Tensor>& s) {
            std::vector<Tensor> in_logical(ins.size());
            std::vector<const Tensor*> in(ins.size(), nullptr);
            for (std::size_t k = 0; k < ins.size(); ++k)
                if (ins[k] >= 0) {
                    in_logical[k] = logical(s, ins[k]);
                    in[k] = &in_logical[k];
                }
            std::vector<Tensor> out(outs.size());
            graph::ExecContext ctx(1);
            schema->run(*node, in, out, ctx, opset);
            for (std::size_t k = 0; k < outs.size(); ++k) s[std::size_t(outs[k])] = store(std::move(out[k]), outs[k]);
        };
    }

    struct ConvState {
        Conv2dGeometry g;
        std::vector<std::int32_t> bias;
        std::vector<QuantizedMultiplier> mult;
        std::vector<std::int8_t> ohwi;
        std::vector<std::int16_t> ohwi16;  ///< int16 weights (the reference kernel's copy) when non-empty
        simd::PackedConvWeights packed;
        Requantization rq;
        std::int32_t zp_in = 0;
    };
    struct GemmState {
        GemmGeometry gg;
        std::vector<std::int8_t> w;
        std::vector<std::int16_t> w16;  ///< int16 weights (the reference kernel's copy) when non-empty
        simd::PackedConvWeights packed;
        std::vector<std::int32_t> bias;
        std::vector<QuantizedMultiplier> mult;
        Requantization rq;
        std::int32_t zp_in = 0;
    };

    Program prog_;
    ExecutorOptions opt_;
    KernelContext kctx_;
    bool half_even_ = false;
    std::vector<Tensor> constants_;  ///< per tensor index: the constant in storage layout (empty otherwise)
    std::vector<Step> steps_;
};

}  // namespace emul
BPUQ_NAMESPACE_END
