// The standard-ONNX QDQ form of a calibrated model (quantized_model.onnx): every calibrated
// activation becomes QuantizeLinear -> DequantizeLinear, weights become int8 initializers read by
// DequantizeLinear (per output channel), biases int32 initializers at scale s_in * s_w. Runnable
// by ONNX Runtime, whose QDQ fusion then executes the convolutions in integers.
#pragma once

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "../graph/ir.hpp"
#include "../quant/quantize.hpp"
#include "fake_quant.hpp"
#include "quant_plan.hpp"
#include "weights.hpp"

BPUQ_NAMESPACE_BEGIN
namespace calib {

namespace detail {
inline Tensor scale_tensor(const QParams& q) {
    if (q.per_channel()) return Tensor::from_vector<float>({static_cast<std::int64_t>(q.scale.size())}, q.scale);
    return Tensor::from_vector<float>({}, {q.scale[0]});
}
inline Tensor zero_point_tensor(const QParams& q) {
    std::vector<std::int8_t> z(q.zero_point.begin(), q.zero_point.end());
    if (q.per_channel()) return Tensor::from_vector<std::int8_t>({static_cast<std::int64_t>(z.size())}, z);
    return Tensor::from_vector<std::int8_t>({}, {z[0]});
}
}  // namespace detail

/// The node of `g` whose meaning or form changes between g's opset and `target` (then it names
/// it; "" = the graph can be written at `target` as it is). Covers the ops bpuq runs; an op changes
/// at the versions listed (e.g. Clip's bounds became inputs at 11, Squeeze's axes at 13, Softmax
/// normalizes one axis instead of a flattened 2-D view from 13 — the same when the dims after its
/// axis are all 1).
inline std::string opset_upgrade_blocker(const graph::Graph& g, std::int64_t target) {
    if (g.opset >= target) return "";
    static const std::map<std::string, std::vector<std::int64_t>> changed{
        {"Upsample", {9, 10}}, {"Slice", {10}},        {"TopK", {10}},       {"Scan", {9}},          {"Resize", {10, 11, 13}},
        {"BatchNormalization", {9}}, {"Cast", {9}},   {"Clip", {11}},       {"Pad", {11}},          {"Dropout", {12}},
        {"Squeeze", {13}},     {"Unsqueeze", {13}},   {"Split", {13}},      {"ReduceSum", {13}},    {"Softmax", {13}},
        {"LogSoftmax", {13}},  {"Hardmax", {13}}};
    for (const auto& n : g.nodes) {
        if (!n.domain.empty()) continue;
        auto it = changed.find(n.op_type);
        if (it == changed.end()) continue;
        for (const std::int64_t v : it->second) {
            if (v <= g.opset || v > target) continue;
            if (v == 13 && (n.op_type == "Softmax" || n.op_type == "LogSoftmax" || n.op_type == "Hardmax")) {
                const graph::Value* x = n.inputs.empty() ? nullptr : g.find_value(n.inputs[0]);
                if (x && x->has_shape) {
                    const auto rank = std::int64_t(x->shape.size());
                    std::int64_t axis = n.attr_int("axis", 1);
                    if (axis < 0) axis += rank;
                    bool trailing_ones = axis >= 0 && axis < rank;
                    for (std::int64_t d = axis + 1; trailing_ones && d < rank; ++d) trailing_ones = x->shape[std::size_t(d)] == 1;
                    if (trailing_ones) continue;  // one axis and the flattened view are the same
                }
            }
            return n.describe() + " of this opset-" + std::to_string(g.opset) + " model means something else at opset " +
                   std::to_string(v);
        }
    }
    return "";
}

/// QuantizeLinear/DequantizeLinear exist from opset 10: an older graph needs to be raised to 10
/// at least (then this names what prevents it; "" = fine).
inline std::string opset10_blocker(const graph::Graph& g) {
    const std::string why = opset_upgrade_blocker(g, 10);
    return why.empty() ? why : why + " (10 is the first opset with QuantizeLinear)";
}

/// The opset a QDQ model of `g` is written at: g's own from 13 on; else 13 when every node keeps
/// its meaning there (per-axis int8 weights and int32 biases, which ONNX Runtime's int8 kernels
/// read); else 10 (float weights and biases; DECISIONS.md #26, #37).
inline std::int64_t qdq_export_opset(const graph::Graph& g) {
    if (g.opset >= 13) return g.opset;
    if (opset_upgrade_blocker(g, 13).empty()) return 13;
    return std::max<std::int64_t>(g.opset, 10);
}

/// Why a QDQ export is impossible (empty when it is possible).
inline std::string qdq_unsupported_reason(const QuantPlan& plan, const std::map<std::string, QParams>& acts,
                                          const graph::Graph* g = nullptr) {
    bool per_channel = false;
    for (const auto& t : plan.calibrated) {
        if (acts.at(t).bits == 16)
            return "tensor '" + t + "' is int16; ONNX QuantizeLinear supports int16 only from opset 21";
        per_channel = per_channel || acts.at(t).per_channel();
    }
    if (g && per_channel && qdq_export_opset(*g) < 13)
        return "activations are per channel, which QuantizeLinear supports from opset 13; " + opset_upgrade_blocker(*g, 13);
    return g ? opset10_blocker(*g) : "";
}

/// Builds the QDQ graph from the optimized graph and the calibration results, at
/// qdq_export_opset(g): from opset 13 with per-channel int8 weights and int32 biases; below it
/// (a model whose ops cannot be raised) with fake-quantized float weights (same values) and float
/// biases holding the program's integers, which ONNX Runtime runs in float.
inline graph::Graph make_qdq_graph(const graph::Graph& g, const QuantPlan& plan, const std::map<std::string, QParams>& acts,
                                   const std::map<std::string, QParams>& weights) {
    const std::string why = qdq_unsupported_reason(plan, acts, &g);
    BPUQ_CHECK(why.empty(), "qdq.unsupported", "cannot export a QDQ model: " + why);
    graph::Graph out = g;
    out.opset = qdq_export_opset(g);
    const bool per_axis = out.opset >= 13;
    out.nodes.clear();
    std::set<std::string> graph_inputs(g.inputs.begin(), g.inputs.end());
    std::map<std::string, std::string> rename;  // graph input or weight -> dequantized name
    auto qdq_pair = [&](const std::string& in, const std::string& out_name, const QParams& q, std::vector<graph::Node>& dst) {
        const std::string s = out.unique_name(in + "_scale"), z = out.unique_name(in + "_zero_point");
        out.initializers[s] = detail::scale_tensor(q);
        out.initializers[z] = detail::zero_point_tensor(q);
        graph::Node qn, dn;
        qn.name = in + "_QuantizeLinear";
        qn.op_type = "QuantizeLinear";
        qn.inputs = {in, s, z};
        qn.outputs = {in + "_quantized"};
        dn.name = in + "_DequantizeLinear";
        dn.op_type = "DequantizeLinear";
        dn.inputs = {in + "_quantized", s, z};
        dn.outputs = {out_name};
        if (q.per_channel()) {
            qn.attributes["axis"] = graph::Attribute::make_int(q.axis);
            dn.attributes["axis"] = graph::Attribute::make_int(q.axis);
        }
        dst.push_back(qn);
        dst.push_back(dn);
    };
    for (const auto& t : plan.calibrated)
        if (graph_inputs.count(t)) {
            qdq_pair(t, t + "_dequantized", acts.at(t), out.nodes);
            rename[t] = t + "_dequantized";
        }
    // weights: int8 initializer + DequantizeLinear (per axis), or fake-quantized float values —
    // also for int16 weights (a colour conversion's coefficients), whose DequantizeLinear would need
    // opset 21: their dequantized values are exact in float32 and so is ONNX Runtime's float Conv
    // a weight folded with its per-channel input's scales is DequantizeLinear -> Div(fold factors)
    const std::map<std::string, Tensor> folds = weight_folds(g, plan, acts);
    for (const auto& kv : weights) {
        const Tensor& w = *g.initializer(kv.first);
        auto fold = folds.find(kv.first);
        const Tensor* f = fold == folds.end() ? nullptr : &fold->second;
        const Tensor qw = quantize_weight(w, kv.second, f);
        if (per_axis && kv.second.bits == 8) {
            const std::string qname = out.unique_name(kv.first + "_int8");
            out.initializers[qname] = qw;
            const std::string s = out.unique_name(kv.first + "_scale"), z = out.unique_name(kv.first + "_zero_point");
            out.initializers[s] = detail::scale_tensor(kv.second);
            out.initializers[z] = detail::zero_point_tensor(kv.second);
            graph::Node dn;
            dn.name = kv.first + "_DequantizeLinear";
            dn.op_type = "DequantizeLinear";
            dn.inputs = {qname, s, z};
            dn.outputs = {kv.first + "_dequantized"};
            if (kv.second.per_channel()) dn.attributes["axis"] = graph::Attribute::make_int(kv.second.axis);
            out.nodes.push_back(dn);
            rename[kv.first] = kv.first + "_dequantized";
            if (f) {
                const std::string fname = out.unique_name(kv.first + "_fold");
                out.initializers[fname] = *f;
                graph::Node div;
                div.name = kv.first + "_unfold";
                div.op_type = "Div";
                div.inputs = {kv.first + "_dequantized", fname};
                div.outputs = {kv.first + "_unfolded"};
                out.nodes.push_back(div);
                rename[kv.first] = kv.first + "_unfolded";
            }
        } else {
            out.initializers[kv.first] = fake_quantized_weight(w, kv.second, f);
        }
    }
    const std::set<std::string> calibrated(plan.calibrated.begin(), plan.calibrated.end());
    for (graph::Node n : g.nodes) {
        const graph::Node orig = n;
        const bool bpu = plan.nodes.at(n.name).on_bpu;
        for (auto& i : n.inputs) {
            auto r = rename.find(i);
            if (r != rename.end() && (graph_inputs.count(i) || bpu)) i = r->second;
        }
        // int32 bias at scale s_in * s_w[c], so that ONNX Runtime can fuse the convolution. The integers
        // are the program's (emul/lower.hpp: b / (s_in * s_w) in double, half away from zero); below
        // opset 13 the bias stays float but holds exactly those integers times the float scale.
        const bool has_weight = orig.inputs.size() > 1 && weights.count(orig.inputs[1]);
        if (bpu && has_weight && (n.op_type == "Conv" || n.op_type == "Gemm") && orig.has_input(2) &&
            g.is_initializer(orig.inputs[2]) && plan.is_quantized(orig.inputs[0])) {
            const QParams& qw = weights.at(orig.inputs[1]);
            const QParams& qx = acts.at(plan.root_of(orig.inputs[0]));
            const Tensor& b = *g.initializer(orig.inputs[2]);
            std::vector<std::int32_t> qb(static_cast<std::size_t>(b.numel()));
            std::vector<float> sb(qb.size());
            for (std::size_t c = 0; c < qb.size(); ++c) {
                const float sw = qw.scale[qw.scale.size() == 1 ? 0 : c];
                const float s_in = weight_input_scale(qx);
                sb[c] = s_in * sw;
                const double v = std::round(double(b.data<float>()[c]) / (double(s_in) * double(sw)));
                qb[c] = static_cast<std::int32_t>(std::max(-2147483648.0, std::min(2147483647.0, v)));
            }
            const std::string& bias = orig.inputs[2];
            if (!per_axis) {
                std::vector<float> fb(qb.size());
                for (std::size_t c = 0; c < qb.size(); ++c) fb[c] = static_cast<float>(qb[c]) * sb[c];  // = DequantizeLinear
                const std::string name = out.unique_name(bias + "_quantized_values");
                out.initializers[name] = Tensor::from_vector<float>(b.shape(), fb);
                n.inputs[2] = name;
            } else {
                const std::string bq = out.unique_name(bias + "_int32"), bs = out.unique_name(bias + "_scale"),
                                  bz = out.unique_name(bias + "_zero_point");
                out.initializers[bq] = Tensor::from_vector<std::int32_t>(b.shape(), qb);
                out.initializers[bs] = Tensor::from_vector<float>({static_cast<std::int64_t>(sb.size())}, sb);
                out.initializers[bz] = Tensor::from_vector<std::int32_t>({static_cast<std::int64_t>(sb.size())},
                                                                         std::vector<std::int32_t>(sb.size(), 0));
                graph::Node dn;
                dn.name = n.name + "_bias_DequantizeLinear";
                dn.op_type = "DequantizeLinear";
                dn.inputs = {bq, bs, bz};
                dn.outputs = {out.unique_name(bias + "_dequantized")};
                dn.attributes["axis"] = graph::Attribute::make_int(0);
                n.inputs[2] = dn.outputs[0];
                out.nodes.push_back(std::move(dn));
            }
        }
        std::vector<graph::Node> after;
        for (auto& o : n.outputs) {
            const auto tpi = plan.tensors.find(o);
            const bool regrid = bpu && tpi != plan.tensors.end() && tpi->second.regrid;  // bilinear Resize
            if ((!calibrated.count(o) && !regrid) || graph_inputs.count(o)) continue;
            const TensorPlan& tp = tpi->second;
            if (tp.float_output && bpu && dequantizes_accumulator(n.op_type)) continue;
            const std::string raw = o + "_float";
            qdq_pair(raw, o, acts.at(plan.root_of(o)), after);
            o = raw;
        }
        out.nodes.push_back(std::move(n));
        for (auto& a : after) out.nodes.push_back(std::move(a));
    }
    out.remove_unused();
    return out;
}

}  // namespace calib
BPUQ_NAMESPACE_END
