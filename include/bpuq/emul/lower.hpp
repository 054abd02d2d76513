// Lowering: a calibrated graph (optimized float graph + quantization plan + parameters) becomes an
// integer Program whose nodes carry every integer constant the kernels need (multipliers, shifts,
// zero points, bounds, tables, quantized weights). Op vocabulary and attributes: docs/PROGRAM.md.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "../calib/fake_quant.hpp"
#include "../calib/quant_plan.hpp"
#include "../calib/weights.hpp"
#include "../graph/op_registry.hpp"
#include "../kernels/params.hpp"
#include "../kernels/reference/conv2d.hpp"
#include "../kernels/reference/eltwise.hpp"
#include "../kernels/reference/pooling.hpp"
#include "program.hpp"

BPUQ_NAMESPACE_BEGIN
namespace emul {

/// The operators the integer program knows (BPU ops) and "float_op" (a CPU node in float).
inline const std::vector<std::string>& program_ops() {
    static const std::vector<std::string> ops{"quantize", "dequantize", "conv2d",   "gemm",    "eltwise",      "avgpool",
                                              "maxpool",  "requantize", "concat",   "lut8",    "lut16",        "reshape",
                                              "transpose", "resize", "float_op"};
    return ops;
}

namespace detail {

inline std::vector<std::int64_t> multipliers_of(const std::vector<QuantizedMultiplier>& qm) {
    std::vector<std::int64_t> v;
    for (const auto& m : qm) v.push_back(m.multiplier);
    return v;
}
inline std::vector<std::int64_t> shifts_of(const std::vector<QuantizedMultiplier>& qm) {
    std::vector<std::int64_t> v;
    for (const auto& m : qm) v.push_back(m.shift);
    return v;
}

template <class T>
std::vector<std::uint8_t> to_bytes(const std::vector<T>& v) {
    std::vector<std::uint8_t> b(v.size() * sizeof(T));
    for (std::size_t i = 0; i < v.size(); ++i) {
        using U = typename std::make_unsigned<T>::type;
        const U u = static_cast<U>(v[i]);
        for (std::size_t k = 0; k < sizeof(T); ++k) b[i * sizeof(T) + k] = static_cast<std::uint8_t>(u >> (8 * k));
    }
    return b;
}

/// Builds a Program node by node. Tensors of the graph get up to two program versions: the
/// quantized one (BPU side) and the float one (CPU side, program I/O); boundary nodes convert.
class Lowering {
public:
    Lowering(const graph::Graph& g, const calib::QuantPlan& plan, const std::map<std::string, QParams>& acts,
             const std::map<std::string, QParams>& weights, Rounding rounding)
        : g_(g), plan_(plan), acts_(acts), weights_(weights), rounding_(rounding) {}

    Program run() {
        prog_.metadata["producer"] = "bpuq";
        prog_.metadata["rounding"] = rounding_ == Rounding::half_to_even ? "half_to_even" : "half_away_from_zero";
        prog_.metadata["layout"] = "NCHW";
        for (const auto& in : g_.inputs) {
            const std::int32_t id = add_tensor(in, value_dtype(in), shape_of(in), {}, false);
            float_id_[in] = id;
            prog_.inputs.push_back(id);
        }
        for (const auto& n : g_.nodes) {
            const auto& np = plan_.nodes.at(n.name);
            try {
                if (np.on_bpu) lower_bpu(n);
                else lower_cpu(n);
            } catch (const Error& e) {
                if (std::string(e.what()).find(n.name) != std::string::npos) throw;
                BPUQ_THROW(e.id(), n.describe() + ": " + e.what());
            }
        }
        for (const auto& o : g_.outputs) {
            const auto tp = plan_.tensors.find(o);
            const bool keep_int = tp != plan_.tensors.end() && tp->second.quantized && !tp->second.float_output;
            prog_.outputs.push_back(keep_int ? quantized(o) : floating(o));
        }
        return std::move(prog_);
    }

private:
    // ---- tensors ----
    Shape shape_of(const std::string& t) const {
        if (const Tensor* c = g_.initializer(t)) return c->shape();
        const graph::Value* v = g_.find_value(t);
        BPUQ_CHECK(v && v->has_shape, "lower.shape", "tensor '" + t + "' has no inferred shape");
        for (auto d : v->shape) BPUQ_CHECK(d >= 0, "lower.shape", "tensor '" + t + "' has a dynamic shape " + shape_to_string(v->shape));
        return v->shape;
    }
    DType value_dtype(const std::string& t) const {
        if (const Tensor* c = g_.initializer(t)) return c->dtype();
        const graph::Value* v = g_.find_value(t);
        return v && v->has_dtype ? v->dtype : DType::float32;
    }
    std::int32_t add_tensor(const std::string& name, DType dt, const Shape& shape, const QParams* q, bool constant,
                            std::vector<std::uint8_t> data = {}) {
        ProgramTensor t;
        t.name = name;
        t.dtype = dt;
        t.shape = shape;
        if (q) {
            t.quant.bits = dt == DType::int32 ? 32 : q->bits;
            t.quant.axis = q->axis;
            t.quant.scales = q->scale;
            t.quant.zero_points = q->zero_point;
        }
        t.is_constant = constant;
        t.data = std::move(data);
        prog_.tensors.push_back(std::move(t));
        return static_cast<std::int32_t>(prog_.tensors.size() - 1);
    }
    bool is_io(const std::string& t) const {
        return std::count(g_.inputs.begin(), g_.inputs.end(), t) || g_.is_graph_output(t);
    }
    const QParams& act_params(const std::string& t) const {
        auto it = acts_.find(t);
        BPUQ_CHECK(it != acts_.end(), "lower.params", "tensor '" + t + "' has no calibrated quantization parameters");
        const QParams& q = it->second;
        if (q.per_channel()) {  // per-channel activations: axis 1, one zero point (DECISIONS.md #44)
            BPUQ_CHECK(q.axis == 1 && std::all_of(q.zero_point.begin(), q.zero_point.end(),
                                                  [&](std::int32_t z) { return z == q.zero_point[0]; }),
                       "lower.per_channel",
                       "tensor '" + t + "' has per-channel parameters on axis " + std::to_string(q.axis) +
                           " with different zero points; the integer program takes per-channel activations on axis 1 "
                           "with one shared zero point");
        }
        return q;
    }
    /// Ops with one scale per operand (everything but conv2d, gemm, maxpool and the boundaries).
    static void require_per_tensor(const graph::Node& n, const QParams& q, const std::string& which) {
        BPUQ_CHECK(!q.per_channel(), "lower.per_channel",
                   n.describe() + ": its " + which + " is quantized per channel, but " + n.op_type +
                       " takes one scale per operand (only Conv, Gemm, MatMul, MaxPool and CPU nodes read per-channel "
                       "activations; the plan keeps the others per tensor)");
    }
    static DType storage(const QParams& q) { return q.bits == 16 ? DType::int16 : DType::int8; }

    /// The quantized program tensor of graph tensor t (adds a quantize node when only the float one exists).
    std::int32_t quantized(const std::string& t) {
        auto it = quant_id_.find(t);
        if (it != quant_id_.end()) return it->second;
        const QParams& q = act_params(t);
        const std::int32_t id = add_tensor(is_io(t) ? t + "_quantized" : t, storage(q), shape_of(t), &q, false);
        quant_id_[t] = id;
        auto f = float_id_.find(t);
        BPUQ_CHECK(f != float_id_.end(), "lower.dataflow", "tensor '" + t + "' is read before it is produced");
        add_node(t + "_quantize", "quantize", {f->second}, {id}, {});
        return id;
    }
    /// The float program tensor of graph tensor t (adds a dequantize node when only the quantized one exists).
    std::int32_t floating(const std::string& t) {
        auto it = float_id_.find(t);
        if (it != float_id_.end()) return it->second;
        if (const Tensor* c = g_.initializer(t)) return constant_as_is(t, *c);
        auto q = quant_id_.find(t);
        BPUQ_CHECK(q != quant_id_.end(), "lower.dataflow", "tensor '" + t + "' is read before it is produced");
        const std::int32_t id = add_tensor(is_io(t) ? t : t + "_float", DType::float32, shape_of(t), nullptr, false);
        float_id_[t] = id;
        add_node(t + "_dequantize", "dequantize", {q->second}, {id}, {});
        return id;
    }
    std::int32_t constant_as_is(const std::string& name, const Tensor& c) {
        std::vector<std::uint8_t> bytes(c.nbytes());
        // Tensor data is host-endian; the format is little-endian (every supported host is).
        if (c.nbytes()) std::memcpy(bytes.data(), c.raw(), c.nbytes());
        const std::int32_t id = add_tensor(name, c.dtype(), c.shape(), nullptr, true, std::move(bytes));
        float_id_[name] = id;
        return id;
    }
    /// A float constant operand of a BPU node, quantized per tensor (symmetric, from its max |x|).
    std::int32_t quantized_constant(const std::string& name, int bits) {
        auto it = quant_id_.find(name);
        if (it != quant_id_.end()) return it->second;
        const Tensor& c = *g_.initializer(name);
        BPUQ_CHECK(c.dtype() == DType::float32, "lower.constant", "constant '" + name + "' is " + dtype_name(c.dtype()));
        // the conversion quantizes constant operands once (calib/constants.hpp, in the weights map) so
        // that the calibrated and QDQ models read the same values; otherwise max |x| / qmax
        auto w = weights_.find(name);
        QParams q;
        if (w != weights_.end() && w->second.bits == bits && !w->second.per_channel()) {
            q = w->second;
        } else {
            float amax = 0.0f;
            for (std::int64_t i = 0; i < c.numel(); ++i) amax = std::max(amax, std::fabs(c.data<float>()[i]));
            q = qparams_from_threshold(amax, bits);
        }
        const Tensor qt = quantize_tensor(c, q);
        std::vector<std::uint8_t> bytes(qt.nbytes());
        std::memcpy(bytes.data(), qt.raw(), qt.nbytes());
        const std::int32_t id = add_tensor(name + "_quantized", storage(q), c.shape(), &q, true, std::move(bytes));
        quant_id_[name] = id;
        return id;
    }
    void add_node(const std::string& name, const std::string& op, std::vector<std::int32_t> in, std::vector<std::int32_t> out,
                  std::map<std::string, AttrValue> attrs) {
        ProgramNode n;
        n.name = name;
        n.op = op;
        n.inputs = std::move(in);
        n.outputs = std::move(out);
        n.attrs = std::move(attrs);
        prog_.nodes.push_back(std::move(n));
    }
    /// The output tensor of a BPU node: its own parameters, or its input's for a passthrough.
    std::int32_t bpu_output(const std::string& t) {
        const std::string root = plan_.root_of(t);
        const QParams& q = act_params(root == t ? t : root);
        const std::int32_t id = add_tensor(is_io(t) ? t + "_quantized" : t, storage(q), shape_of(t), &q, false);
        quant_id_[t] = id;
        return id;
    }
    const ProgramTensor& tensor(std::int32_t id) const { return prog_.tensors[static_cast<std::size_t>(id)]; }
    QParams params_of(std::int32_t id) const { return qparams_of(tensor(id)); }
    static AttrValue ints(std::vector<std::int64_t> v) { return AttrValue::of_ints(std::move(v)); }
    static AttrValue one(std::int64_t v) { return AttrValue::of_ints({v}); }

    // ---- CPU nodes: float op with its ONNX attributes ----
    void lower_cpu(const graph::Node& n) {
        std::vector<std::int32_t> in;
        for (const auto& i : n.inputs) in.push_back(i.empty() ? -1 : floating(i));
        std::vector<std::int32_t> out;
        for (const auto& o : n.outputs) {
            if (o.empty()) {
                out.push_back(add_tensor(n.name + "_unused", DType::float32, {0}, nullptr, false));
                continue;
            }
            const std::int32_t id = add_tensor(plan_.is_quantized(o) && !is_io(o) ? o + "_float" : o, value_dtype(o), shape_of(o), nullptr, false);
            float_id_[o] = id;
            out.push_back(id);
        }
        std::map<std::string, AttrValue> attrs;
        attrs["op_type"] = AttrValue::of_string(n.op_type);
        attrs["domain"] = AttrValue::of_string(n.domain);
        attrs["opset"] = one(g_.opset);
        for (const auto& kv : n.attributes) {
            const graph::Attribute& a = kv.second;
            switch (a.kind) {
                case graph::Attribute::Kind::int_: attrs["i:" + kv.first] = one(a.i); break;
                case graph::Attribute::Kind::ints: attrs["I:" + kv.first] = ints(a.ints); break;
                case graph::Attribute::Kind::float_: attrs["f:" + kv.first] = AttrValue::of_floats({a.f}); break;
                case graph::Attribute::Kind::floats: attrs["F:" + kv.first] = AttrValue::of_floats(a.floats); break;
                case graph::Attribute::Kind::string_: attrs["s:" + kv.first] = AttrValue::of_string(a.s); break;
                default:
                    BPUQ_THROW("lower.attribute", n.describe() + " attribute '" + kv.first + "' of kind " +
                                                      graph::attribute_kind_name(a.kind) + " cannot be stored in a program");
            }
        }
        add_node(n.name, "float_op", in, out, attrs);
    }

    // ---- BPU nodes ----
    void lower_bpu(const graph::Node& n) {
        const std::string& op = n.op_type;
        if (op == "Conv") return lower_conv(n);
        if (op == "Gemm" || op == "MatMul") return lower_gemm(n);
        if (op == "Add" || op == "Sub" || op == "Mul") return lower_eltwise(n);
        if (op == "AveragePool" || op == "GlobalAveragePool") return lower_avgpool(n);
        if (op == "MaxPool" || op == "GlobalMaxPool") return lower_maxpool(n);
        if (op == "Concat") return lower_concat(n);
        if (op == "Relu" || op == "Clip") return lower_clamp(n);
        if (op == "Reshape" || op == "Flatten" || op == "Squeeze" || op == "Unsqueeze" || op == "Identity" || op == "Dropout")
            return lower_reshape(n);
        if (op == "Transpose") return lower_transpose(n);
        if (op == "Resize" || op == "Upsample") return lower_resize(n);
        if (op == "Sigmoid" || op == "Tanh" || op == "HardSigmoid" || op == "HardSwish" || op == "Exp" || op == "Gelu" ||
            op == "Erf" || op == "Softplus" || op == "Sqrt" || op == "LeakyRelu")
            return lower_lut(n);
        BPUQ_THROW("lower.unsupported", n.describe() + " has no integer lowering; run it on the CPU (run_on_cpu)");
    }

    /// Output parameters, int32 output flag, and the [lo, hi] bounds of a node's output.
    struct OutputSpec {
        std::int32_t id = -1;
        bool int32_out = false;
        QParams q;
    };

    /// multiplier per output channel c: s_in * s_w[c] / s_out (or identity for int32 outputs)
    std::vector<QuantizedMultiplier> channel_multipliers(float s_in, const QParams& w, const OutputSpec& out, std::size_t channels) {
        std::vector<QuantizedMultiplier> m(channels);
        for (std::size_t c = 0; c < channels; ++c) {
            const double sw = w.scale[w.scale.size() == 1 ? 0 : c];
            const double so = out.q.scale[out.q.scale.size() == 1 ? 0 : c];  // per-channel outputs: one scale each
            m[c] = out.int32_out ? quantize_multiplier(1.0) : quantize_multiplier(double(s_in) * sw / so);
        }
        return m;
    }
    std::vector<std::uint8_t> quantize_bias(const std::string& bias, float s_in, const QParams& w, std::size_t channels) {
        std::vector<std::int32_t> b(channels, 0);
        if (!bias.empty()) {
            const Tensor* t = g_.initializer(bias);
            BPUQ_CHECK(t && t->dtype() == DType::float32 && static_cast<std::size_t>(t->numel()) == channels, "lower.bias",
                       "bias '" + bias + "' must be a float constant with one value per output channel");
            for (std::size_t c = 0; c < channels; ++c) {
                const double s = double(s_in) * w.scale[w.scale.size() == 1 ? 0 : c];
                const double v = std::round(double(t->data<float>()[c]) / s);  // half away from zero
                b[c] = static_cast<std::int32_t>(std::max(-2147483648.0, std::min(2147483647.0, v)));
            }
        }
        return to_bytes(b);
    }
    OutputSpec conv_like_output(const graph::Node& n, float s_in, const QParams& w, std::size_t channels) {
        OutputSpec o;
        const std::string& t = n.outputs[0];
        const auto& tp = plan_.tensors.at(t);
        o.int32_out = tp.float_output;
        if (o.int32_out) {  // dequantized straight from the accumulator: scale s_in * s_w[c] per channel
            o.q.bits = 32;
            o.q.axis = 1;
            o.q.scale.clear();  // a default QParams holds one scale already
            for (std::size_t c = 0; c < channels; ++c) o.q.scale.push_back(s_in * w.scale[w.scale.size() == 1 ? 0 : c]);
            o.q.zero_point.assign(channels, 0);
            if (w.scale.size() == 1 || channels == 1) {
                o.q.axis = -1;
                o.q.scale.resize(1);
                o.q.zero_point.resize(1);
            }
            o.id = add_tensor(is_io(t) ? t + "_quantized" : t, DType::int32, shape_of(t), &o.q, false);
            quant_id_[t] = o.id;
        } else {
            o.id = bpu_output(t);
            o.q = params_of(o.id);
        }
        return o;
    }
    void bounds(const graph::Node& n, const OutputSpec& o, std::int32_t& lo, std::int32_t& hi) {
        const graph::ops::Epilogue e = graph::ops::conv_epilogue(n);
        if (o.int32_out) {  // scale s_in * s_w[c] > 0, zero point 0: a ReLU is a floor at 0 in every channel
            lo = std::numeric_limits<std::int32_t>::min();
            hi = std::numeric_limits<std::int32_t>::max();
            BPUQ_CHECK(!std::isfinite(e.hi) && (!std::isfinite(e.lo) || e.lo == 0.0f), "lower.output",
                       n.describe() + " is a float model output read from the int32 accumulator; its fused clip to [" +
                           std::to_string(e.lo) + ", " + std::to_string(e.hi) + "] has no int32 lowering (quantize the output)");
            if (std::isfinite(e.lo)) lo = 0;
            return;
        }
        const std::int32_t qmin = o.q.qmin(), qmax = o.q.qmax();
        // per-channel outputs: the clip must map to the same integers in every channel (the plan
        // only lets clips that start at 0 produce per-channel tensors, where it does)
        for (std::size_t c = 0; c < o.q.scale.size(); ++c) {
            std::int32_t l = qmin, h = qmax;
            if (std::isfinite(e.lo)) l = std::max(qmin, quantize_value(e.lo, o.q.scale[c], o.q.zero_point[c], qmin, qmax));
            if (std::isfinite(e.hi)) h = std::min(qmax, quantize_value(e.hi, o.q.scale[c], o.q.zero_point[c], qmin, qmax));
            BPUQ_CHECK(c == 0 || (l == lo && h == hi), "lower.per_channel",
                       n.describe() + ": its fused clip [" + std::to_string(e.lo) + ", " + std::to_string(e.hi) +
                           "] maps to integer bounds that differ between output channels 0 and " + std::to_string(c));
            lo = l;
            hi = h;
        }
    }
    /// The integer weights of `name` under `q`, as symmetric values: q - zero point. Weights with
    /// zero points (asymmetric uint8 weights of a loaded QDQ model) become int16 values in
    /// [-255, 255] unless they fit int8 — exact, with the same scales.
    Tensor symmetric_weight_ints(const std::string& name, const QParams& q, QParams& sym, const Tensor* fold = nullptr) const {
        const Tensor& w = *g_.initializer(name);
        const Tensor qw = calib::quantize_weight(w, q, fold);
        sym = q;
        if (std::all_of(q.zero_point.begin(), q.zero_point.end(), [](std::int32_t z) { return z == 0; })) return qw;
        std::vector<std::int32_t> v(static_cast<std::size_t>(qw.numel()));
        bool fits8 = true;
        for_each_channel_run(w.shape(), q.axis, q.channels(), [&](std::size_t c, std::int64_t off, std::int64_t len) {
            for (std::int64_t i = off; i < off + len; ++i) {
                v[std::size_t(i)] = (q.bits == 8 ? qw.data<std::int8_t>()[i] : qw.data<std::int16_t>()[i]) - q.zero_point[c];
                fits8 = fits8 && v[std::size_t(i)] >= -128 && v[std::size_t(i)] <= 127;
            }
        });
        sym.bits = fits8 ? 8 : 16;
        sym.zero_point.assign(q.zero_point.size(), 0);
        sym.symmetric = true;
        sym.narrow = false;
        Tensor out(fits8 ? DType::int8 : DType::int16, w.shape());
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (fits8) out.data<std::int8_t>()[i] = static_cast<std::int8_t>(v[i]);
            else out.data<std::int16_t>()[i] = static_cast<std::int16_t>(v[i]);
        }
        return out;
    }
    template <class T>
    static std::vector<std::uint8_t> ohwi_bytes(const Tensor& qw) {
        const int co = int(qw.dim(0)), ci = int(qw.dim(1)), kh = int(qw.dim(2)), kw = int(qw.dim(3));
        std::vector<T> tmp(static_cast<std::size_t>(qw.numel()));
        oihw_to_ohwi(qw.data<T>(), tmp.data(), co, ci, kh, kw);
        return to_bytes(tmp);
    }
    std::int32_t quantized_weight(const std::string& name, const QParams& q, bool to_ohwi, const Tensor* fold) {
        const Tensor& w = *g_.initializer(name);
        QParams sym;
        const Tensor qw = symmetric_weight_ints(name, q, sym, fold);
        std::vector<std::uint8_t> bytes(qw.nbytes());
        Shape shape = w.shape();
        if (to_ohwi && w.rank() == 4) {  // OIHW -> OHWI
            bytes = qw.dtype() == DType::int16 ? ohwi_bytes<std::int16_t>(qw) : ohwi_bytes<std::int8_t>(qw);
            shape = {w.dim(0), w.dim(2), w.dim(3), w.dim(1)};
        } else {
            std::memcpy(bytes.data(), qw.raw(), bytes.size());
        }
        return add_tensor(name + "_quantized", qw.dtype(), shape, &sym, true, std::move(bytes));
    }

    void lower_conv(const graph::Node& n) {
        BPUQ_CHECK(n.has_input(1) && g_.is_initializer(n.inputs[1]) && weights_.count(n.inputs[1]), "lower.conv",
                   n.describe() + " needs constant weights");
        const Shape xs = shape_of(n.inputs[0]);
        BPUQ_CHECK(xs.size() == 4, "lower.conv", n.describe() + " is not a 2-D convolution (input " + shape_to_string(xs) + ")");
        const std::int32_t x = quantized(n.inputs[0]);
        const QParams qx = params_of(x);
        const QParams& qw = weights_.at(n.inputs[1]);
        const Tensor& w = *g_.initializer(n.inputs[1]);
        const graph::ops::ConvShape cs = graph::ops::conv_shape(n, xs, w.shape());
        const std::size_t co = static_cast<std::size_t>(cs.M);
        // a per-channel input: its scales are folded into the weights, the products have scale s_w
        const Tensor fold = qx.per_channel() ? calib::weight_fold_factors(n, w, qx) : Tensor();
        const float s_in = calib::weight_input_scale(qx);
        const std::int32_t wid = quantized_weight(n.inputs[1], qw, true, qx.per_channel() ? &fold : nullptr);
        const std::int32_t bid = add_tensor(n.name + "_bias", DType::int32, {cs.M}, nullptr, true,
                                            quantize_bias(n.has_input(2) ? n.inputs[2] : "", s_in, qw, co));
        const OutputSpec o = conv_like_output(n, s_in, qw, co);
        std::int32_t lo = 0, hi = 0;
        bounds(n, o, lo, hi);
        const auto m = channel_multipliers(s_in, qw, o, co);
        const auto& gm = cs.g;
        add_node(n.name, "conv2d", {x, wid, bid}, {o.id},
                 {{"kernel", ints(gm.kernel)},
                  {"strides", ints(gm.strides)},
                  {"dilations", ints(gm.dilations)},
                  {"pads", ints(gm.pads)},
                  {"group", one(cs.group)},
                  {"multiplier", ints(multipliers_of(m))},
                  {"shift", ints(shifts_of(m))},
                  {"zp_in", one(qx.zero_point[0])},
                  {"zp_out", one(o.int32_out ? 0 : o.q.zero_point[0])},
                  {"lo", one(lo)},
                  {"hi", one(hi)}});
    }

    void lower_gemm(const graph::Node& n) {
        const bool gemm = n.op_type == "Gemm";
        BPUQ_CHECK(n.has_input(1) && g_.is_initializer(n.inputs[1]) && weights_.count(n.inputs[1]), "lower.gemm",
                   n.describe() + " needs a constant second operand on the BPU");
        if (gemm)
            BPUQ_CHECK(n.attr_float("alpha", 1.0f) == 1.0f && n.attr_float("beta", 1.0f) == 1.0f && n.attr_int("transA", 0) == 0,
                       "lower.gemm", n.describe() + " with alpha/beta != 1 or transA has no integer lowering; run it on the CPU");
        const Shape as = shape_of(n.inputs[0]);
        BPUQ_CHECK(as.size() == 2, "lower.gemm", n.describe() + " needs a 2-D first operand, got " + shape_to_string(as));
        const std::int32_t a = quantized(n.inputs[0]);
        const QParams qa = params_of(a);
        const Tensor& w = *g_.initializer(n.inputs[1]);
        QParams qw = weights_.at(n.inputs[1]);
        const bool trans_b = gemm && n.attr_int("transB", 0) != 0;
        const std::int64_t N = trans_b ? w.dim(0) : w.dim(1), K = trans_b ? w.dim(1) : w.dim(0);
        const Tensor fold = qa.per_channel() ? calib::weight_fold_factors(n, w, qa) : Tensor();
        const float s_in = calib::weight_input_scale(qa);
        // weights stored [N][K]
        QParams qnk;
        const Tensor qwt = symmetric_weight_ints(n.inputs[1], qw, qnk, qa.per_channel() ? &fold : nullptr);
        std::vector<std::int16_t> nk(static_cast<std::size_t>(N * K));
        for (std::int64_t i = 0; i < N; ++i)
            for (std::int64_t k = 0; k < K; ++k) {
                const std::int64_t at = trans_b ? i * K + k : k * N + i;
                nk[static_cast<std::size_t>(i * K + k)] =
                    qwt.dtype() == DType::int16 ? qwt.data<std::int16_t>()[at] : qwt.data<std::int8_t>()[at];
            }
        qnk.axis = qw.scale.size() > 1 ? 0 : -1;
        const bool w16 = qwt.dtype() == DType::int16;
        const std::int32_t wid = add_tensor(n.inputs[1] + "_quantized", qwt.dtype(), {N, K}, &qnk, true,
                                            w16 ? to_bytes(nk) : to_bytes(std::vector<std::int8_t>(nk.begin(), nk.end())));
        std::string bias;
        if (gemm && n.has_input(2)) {
            bias = n.inputs[2];
            BPUQ_CHECK(g_.is_initializer(bias) && g_.initializer(bias)->numel() == N, "lower.gemm",
                       n.describe() + " bias must be a constant of N = " + std::to_string(N) + " values");
        }
        const std::int32_t bid = add_tensor(n.name + "_bias", DType::int32, {N}, nullptr, true,
                                            quantize_bias(bias, s_in, qw, static_cast<std::size_t>(N)));
        const OutputSpec o = conv_like_output(n, s_in, qw, static_cast<std::size_t>(N));
        std::int32_t lo = 0, hi = 0;
        bounds(n, o, lo, hi);
        const auto m = channel_multipliers(s_in, qw, o, static_cast<std::size_t>(N));
        add_node(n.name, "gemm", {a, wid, bid}, {o.id},
                 {{"multiplier", ints(multipliers_of(m))},
                  {"shift", ints(shifts_of(m))},
                  {"zp_in", one(qa.zero_point[0])},
                  {"zp_out", one(o.int32_out ? 0 : o.q.zero_point[0])},
                  {"lo", one(lo)},
                  {"hi", one(hi)}});
    }

    std::int32_t operand(const std::string& t, int bits) {
        return g_.is_initializer(t) ? quantized_constant(t, bits) : quantized(t);
    }

    void lower_eltwise(const graph::Node& n) {
        const int bits = plan_.tensors.at(plan_.root_of(n.outputs[0])).bits;
        std::int32_t a = operand(n.inputs[0], bits), b = operand(n.inputs[1], bits);
        // the full-size operand goes first; Sub cannot swap
        if (shape_numel(tensor(a).shape) < shape_numel(tensor(b).shape)) {
            BPUQ_CHECK(n.op_type != "Sub", "lower.eltwise", n.describe() + " broadcasts its first operand; no integer lowering");
            std::swap(a, b);
        }
        const Shape as = tensor(a).shape, bs = tensor(b).shape;
        const std::int64_t nb = shape_numel(bs);
        // supported broadcasts: equal shapes, a scalar, or one value per channel (axis 1)
        bool ok = as == bs || nb == 1;
        if (!ok && as.size() >= 2 && nb == as[1]) {
            Shape expect(as.size(), 1);
            expect[1] = as[1];
            Shape bs_full = bs;
            while (bs_full.size() < as.size()) bs_full.insert(bs_full.begin(), 1);
            ok = bs_full == expect;
        }
        BPUQ_CHECK(ok, "lower.eltwise",
                   n.describe() + " broadcasts " + shape_to_string(bs) + " onto " + shape_to_string(as) +
                       "; the integer kernel takes equal shapes, a scalar, or one value per channel");
        const QParams qa = params_of(a), qb = params_of(b);
        const std::int32_t out = bpu_output(n.outputs[0]);
        const QParams qo = params_of(out);
        require_per_tensor(n, qa, "first operand");
        require_per_tensor(n, qb, "second operand");
        require_per_tensor(n, qo, "output");
        const EltwiseOp op = n.op_type == "Add" ? EltwiseOp::add : n.op_type == "Sub" ? EltwiseOp::sub : EltwiseOp::mul;
        const EltwiseParams p = EltwiseParams::make(op, qa.scale[0], qa.zero_point[0], qb.scale[0], qb.zero_point[0],
                                                    qo.scale[0], qo.zero_point[0], qo.qmin(), qo.qmax(), bits);
        add_node(n.name, "eltwise", {a, b}, {out},
                 {{"op", one(static_cast<std::int64_t>(op))},
                  {"zp_a", one(p.zp_a)},
                  {"zp_b", one(p.zp_b)},
                  {"zp_out", one(p.zp_out)},
                  {"lo", one(p.lo)},
                  {"hi", one(p.hi)},
                  {"left_shift", one(p.left_shift)},
                  {"multiplier", ints({p.mult_a.multiplier, p.mult_b.multiplier, p.mult_out.multiplier})},
                  {"shift", ints({p.mult_a.shift, p.mult_b.shift, p.mult_out.shift})}});
    }

    void pool_window(const graph::Node& n, const Shape& xs, bool global, std::vector<std::int64_t>& kernel,
                     std::vector<std::int64_t>& strides, std::vector<std::int64_t>& pads) {
        BPUQ_CHECK(xs.size() == 4, "lower.pool", n.describe() + " is not a 2-D pooling (input " + shape_to_string(xs) + ")");
        if (global) {
            kernel = {xs[2], xs[3]};
            strides = {1, 1};
            pads = {0, 0, 0, 0};
            return;
        }
        const bool ceil = n.attr_int("ceil_mode", 0) != 0;
        const graph::ops::WindowGeometry gm =
            graph::ops::window_geometry(n, {xs[2], xs[3]}, n.attr_ints("kernel_shape"), ceil);
        for (auto d : gm.dilations) BPUQ_CHECK(d == 1, "lower.pool", n.describe() + " has dilations; no integer lowering");
        kernel = gm.kernel;
        strides = gm.strides;
        pads = gm.pads;
        // ceil_mode: grow the end padding so that the floor formula yields ONNX's output size
        for (int i = 0; i < 2; ++i) {
            const std::int64_t need = (gm.out[std::size_t(i)] - 1) * strides[std::size_t(i)] + kernel[std::size_t(i)] -
                                      xs[std::size_t(2 + i)] - pads[std::size_t(i)];
            pads[std::size_t(2 + i)] = std::max(pads[std::size_t(2 + i)], need);
        }
    }

    void lower_avgpool(const graph::Node& n) {
        const bool global = n.op_type == "GlobalAveragePool";
        const Shape xs = shape_of(n.inputs[0]);
        std::vector<std::int64_t> kernel, strides, pads;
        pool_window(n, xs, global, kernel, strides, pads);
        const bool include_pad = n.attr_int("count_include_pad", 0) != 0;
        BPUQ_CHECK(!(include_pad && n.attr_int("ceil_mode", 0)), "lower.pool",
                   n.describe() + ": count_include_pad with ceil_mode has no integer lowering");
        const std::int32_t x = quantized(n.inputs[0]);
        const std::int32_t out = bpu_output(n.outputs[0]);
        const QParams qx = params_of(x), qo = params_of(out);
        require_per_tensor(n, qx, "input");
        require_per_tensor(n, qo, "output");
        const std::int64_t max_count = kernel[0] * kernel[1];
        const double m = double(qx.scale[0]) / double(qo.scale[0]);
        // multiplier for every count 1..max_count: M / count
        std::vector<std::int64_t> mult(static_cast<std::size_t>(max_count) + 1, 0), shift(static_cast<std::size_t>(max_count) + 1, 0);
        const std::int64_t first = global ? max_count : 1;
        for (std::int64_t c = first; c <= max_count; ++c) {
            const QuantizedMultiplier q = quantize_multiplier(m / double(c));
            mult[static_cast<std::size_t>(c)] = q.multiplier;
            shift[static_cast<std::size_t>(c)] = q.shift;
        }
        add_node(n.name, "avgpool", {x}, {out},
                 {{"kernel", ints(kernel)},
                  {"strides", ints(strides)},
                  {"pads", ints(pads)},
                  {"count_include_pad", one(include_pad ? 1 : 0)},
                  {"multiplier", ints(mult)},
                  {"shift", ints(shift)},
                  {"zp_in", one(qx.zero_point[0])},
                  {"zp_out", one(qo.zero_point[0])},
                  {"lo", one(qo.qmin())},
                  {"hi", one(qo.qmax())}});
    }

    void lower_maxpool(const graph::Node& n) {
        const Shape xs = shape_of(n.inputs[0]);
        std::vector<std::int64_t> kernel, strides, pads;
        pool_window(n, xs, n.op_type == "GlobalMaxPool", kernel, strides, pads);
        BPUQ_CHECK(n.outputs.size() == 1 || n.outputs[1].empty(), "lower.pool", n.describe() + " Indices output has no integer lowering");
        const std::int32_t x = quantized(n.inputs[0]);
        const std::int32_t out = bpu_output(n.outputs[0]);
        add_node(n.name, "maxpool", {x}, {out}, {{"kernel", ints(kernel)}, {"strides", ints(strides)}, {"pads", ints(pads)}});
    }

    void lower_concat(const graph::Node& n) {
        const std::int32_t out = bpu_output(n.outputs[0]);
        const QParams qo = params_of(out);
        require_per_tensor(n, qo, "output");
        std::vector<std::int32_t> in;
        std::vector<std::int64_t> mult, shift, zps;
        const int bits = qo.bits;
        for (const auto& i : n.inputs) {
            const std::int32_t id = operand(i, bits);
            const QParams qi = params_of(id);
            require_per_tensor(n, qi, "input '" + i + "'");
            const QuantizedMultiplier m = rescale_multiplier(qi.scale[0], qo.scale[0]);
            in.push_back(id);
            mult.push_back(m.multiplier);
            shift.push_back(m.shift);
            zps.push_back(qi.zero_point[0]);
        }
        const std::int64_t axis = graph::ops::norm_axis(n, n.attr_int("axis", 1), static_cast<std::int64_t>(tensor(out).shape.size()));
        add_node(n.name, "concat", in, {out},
                 {{"axis", one(axis)}, {"multiplier", ints(mult)}, {"shift", ints(shift)}, {"zp_in", ints(zps)},
                  {"zp_out", one(qo.zero_point[0])}});
    }

    void lower_clamp(const graph::Node& n) {
        const std::int32_t x = quantized(n.inputs[0]);
        const std::int32_t out = bpu_output(n.outputs[0]);
        const QParams qx = params_of(x), qo = params_of(out);
        require_per_tensor(n, qx, "input");
        require_per_tensor(n, qo, "output");
        float lo_f = 0.0f, hi_f = std::numeric_limits<float>::infinity();
        if (n.op_type == "Clip") {
            lo_f = -std::numeric_limits<float>::infinity();
            if (g_.opset < 11) {
                lo_f = n.attr_float("min", lo_f);
                hi_f = n.attr_float("max", hi_f);
            } else {
                if (n.has_input(1)) {
                    const Tensor* t = g_.initializer(n.inputs[1]);
                    BPUQ_CHECK(t, "lower.clip", n.describe() + " min must be a constant");
                    lo_f = t->data<float>()[0];
                }
                if (n.has_input(2)) {
                    const Tensor* t = g_.initializer(n.inputs[2]);
                    BPUQ_CHECK(t, "lower.clip", n.describe() + " max must be a constant");
                    hi_f = t->data<float>()[0];
                }
            }
        }
        std::int32_t lo = qo.qmin(), hi = qo.qmax();
        if (std::isfinite(lo_f)) lo = std::max(lo, quantize_value(lo_f, qo.scale[0], qo.zero_point[0], qo.qmin(), qo.qmax()));
        if (std::isfinite(hi_f)) hi = std::min(hi, quantize_value(hi_f, qo.scale[0], qo.zero_point[0], qo.qmin(), qo.qmax()));
        const QuantizedMultiplier m = rescale_multiplier(qx.scale[0], qo.scale[0]);
        add_node(n.name, "requantize", {x}, {out},
                 {{"multiplier", one(m.multiplier)},
                  {"shift", one(m.shift)},
                  {"zp_in", one(qx.zero_point[0])},
                  {"zp_out", one(qo.zero_point[0])},
                  {"lo", one(lo)},
                  {"hi", one(hi)}});
    }

    void lower_reshape(const graph::Node& n) {
        const std::int32_t x = quantized(n.inputs[0]);
        if (n.op_type != "Identity" && n.op_type != "Dropout") require_per_tensor(n, params_of(x), "input");
        const std::int32_t out = bpu_output(n.outputs[0]);
        add_node(n.name, "reshape", {x}, {out}, {});
    }

    void lower_transpose(const graph::Node& n) {
        const std::int32_t x = quantized(n.inputs[0]);
        require_per_tensor(n, params_of(x), "input");
        const std::int32_t out = bpu_output(n.outputs[0]);
        std::vector<std::int64_t> perm = n.attr_ints("perm");
        if (perm.empty())
            for (std::int64_t i = static_cast<std::int64_t>(tensor(x).shape.size()); i-- > 0;) perm.push_back(i);
        add_node(n.name, "transpose", {x}, {out}, {{"perm", ints(perm)}});
    }

    /// Nearest or bilinear resize of H and W on the input's grid (calib::resize_integer_refusal
    /// decided that this node has that form; the output aliases the input's parameters).
    void lower_resize(const graph::Node& n) {
        calib::ResizeForm form;
        const std::string refusal = calib::resize_integer_refusal(g_, n, &form);
        BPUQ_CHECK(refusal.empty(), "lower.unsupported", n.describe() + " has no integer form: " + refusal);
        const std::int32_t x = quantized(n.inputs[0]);
        require_per_tensor(n, params_of(x), "input");
        const std::int32_t out = bpu_output(n.outputs[0]);
        const QParams qx = params_of(x), qo = params_of(out);
        BPUQ_CHECK(qx.scale == qo.scale && qx.zero_point == qo.zero_point && tensor(x).dtype == tensor(out).dtype,
                   "lower.resize", n.describe() + " output must share its input's type, scale and zero point");
        add_node(n.name, "resize", {x}, {out},
                 {{"mode", AttrValue::of_string(form.mode)},
                  {"coordinate_transformation_mode", AttrValue::of_string(form.coordinates)},
                  {"nearest_mode", AttrValue::of_string(form.nearest_mode)},
                  {"scales", AttrValue::of_floats(form.scales)}});
    }

    /// Evaluates the node's own float implementation on sample points (the same functions the
    /// float executor uses), so a table always agrees with the float model.
    std::vector<float> evaluate_float(const graph::Node& n, const std::vector<float>& xs) {
        graph::Node probe = n;
        probe.inputs = {"x"};
        probe.outputs = {"y"};
        Tensor x = Tensor::from_vector<float>({static_cast<std::int64_t>(xs.size())}, xs);
        std::vector<const Tensor*> in{&x};
        for (std::size_t i = 1; i < n.inputs.size(); ++i) in.push_back(n.has_input(i) ? g_.initializer(n.inputs[i]) : nullptr);
        std::vector<Tensor> out(1);
        graph::ExecContext ctx(1);
        graph::require_op(n, g_.opset).run(probe, in, out, ctx, g_.opset);
        return std::vector<float>(out[0].data<float>(), out[0].data<float>() + out[0].numel());
    }

    void lower_lut(const graph::Node& n) {
        const std::int32_t x = quantized(n.inputs[0]);
        const std::int32_t out = bpu_output(n.outputs[0]);
        const QParams qx = params_of(x), qo = params_of(out);
        require_per_tensor(n, qx, "input");
        require_per_tensor(n, qo, "output");
        if (qx.bits == 8) {
            std::vector<float> xs;
            for (int q = -128; q <= 127; ++q) xs.push_back(dequantize_value(q, qx.scale[0], qx.zero_point[0]));
            const std::vector<float> ys = evaluate_float(n, xs);
            std::vector<std::int64_t> table;
            for (float y : ys)
                table.push_back(rounding_ == Rounding::half_to_even
                                    ? quantize_value<RoundHalfToEven>(y, qo.scale[0], qo.zero_point[0], qo.qmin(), qo.qmax())
                                    : quantize_value<RoundHalfAwayFromZero>(y, qo.scale[0], qo.zero_point[0], qo.qmin(), qo.qmax()));
            add_node(n.name, "lut8", {x}, {out}, {{"table", ints(table)}});
        } else {
            std::vector<float> xs;
            for (int i = 0; i <= 512; ++i) xs.push_back(static_cast<float>(i * 128 - 32768) * qx.scale[0]);
            const std::vector<float> ys = evaluate_float(n, xs);
            std::vector<std::int64_t> table;
            const float big = static_cast<float>(1 << 30);
            for (float y : ys) {
                float v = y / qo.scale[0];
                v = v != v ? 0.0f : std::min(std::max(v, -big), big);
                table.push_back(static_cast<std::int64_t>(round_float(v, rounding_)) + qo.zero_point[0]);
            }
            add_node(n.name, "lut16", {x}, {out}, {{"table", ints(table)}, {"lo", one(qo.qmin())}, {"hi", one(qo.qmax())}});
        }
    }

    const graph::Graph& g_;
    const calib::QuantPlan& plan_;
    const std::map<std::string, QParams>& acts_;
    const std::map<std::string, QParams>& weights_;
    Rounding rounding_;
    Program prog_;
    std::map<std::string, std::int32_t> quant_id_, float_id_;
};

}  // namespace detail

/// Lowers an optimized graph with its plan and calibrated parameters to an integer program.
inline Program lower_to_program(const graph::Graph& g, const calib::QuantPlan& plan, const std::map<std::string, QParams>& acts,
                                const std::map<std::string, QParams>& weights, Rounding rounding = Rounding::half_away_from_zero) {
    return detail::Lowering(g, plan, acts, weights, rounding).run();
}

}  // namespace emul
BPUQ_NAMESPACE_END
