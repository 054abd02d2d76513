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

/// QuantizeLinear/DequantizeLinear exist from opset 10: an older graph is exported at opset 10
/// unless it uses an op whose meaning changed on the way (then this names it; "" = fine).
inline std::string opset10_blocker(const graph::Graph& g) {
    if (g.opset >= 10) return "";
    static const std::set<std::string> changed{"Upsample", "Slice", "TopK", "Scan", "Resize", "BatchNormalization", "Cast"};
    for (const auto& n : g.nodes)
        if (n.domain.empty() && changed.count(n.op_type))
            return n.describe() + " of this opset-" + std::to_string(g.opset) + " model means something else at opset 10, "
                   "the first with QuantizeLinear";
    return "";
}

/// Why a QDQ export is impossible (empty when it is possible).
inline std::string qdq_unsupported_reason(const QuantPlan& plan, const std::map<std::string, QParams>& acts,
                                          const graph::Graph* g = nullptr) {
    for (const auto& t : plan.calibrated)
        if (acts.at(t).bits == 16)
            return "tensor '" + t + "' is int16; ONNX QuantizeLinear supports int16 only from opset 21";
    return g ? opset10_blocker(*g) : "";
}

/// Builds the QDQ graph from the optimized graph and the calibration results. Requires the graph's
/// opset to be >= 13 for per-channel weights; older models get fake-quantized float weights
/// (same values) and float biases, which ONNX Runtime runs in float. Models below opset 10 are
/// written at opset 10 (the first with QuantizeLinear).
inline graph::Graph make_qdq_graph(const graph::Graph& g, const QuantPlan& plan, const std::map<std::string, QParams>& acts,
                                   const std::map<std::string, QParams>& weights) {
    const std::string why = qdq_unsupported_reason(plan, acts, &g);
    BPUQ_CHECK(why.empty(), "qdq.unsupported", "cannot export a QDQ model: " + why);
    const bool per_axis = g.opset >= 13;
    graph::Graph out = g;
    out.opset = std::max<std::int64_t>(g.opset, 10);  // QuantizeLinear needs 10 (opset10_blocker checked the ops)
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
    for (const auto& kv : weights) {
        const Tensor& w = *g.initializer(kv.first);
        const Tensor qw = quantize_tensor(w, kv.second);
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
        } else {
            out.initializers[kv.first] = dequantize_tensor(qw, kv.second);
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
                sb[c] = qx.scale[0] * sw;
                const double v = std::round(double(b.data<float>()[c]) / (double(qx.scale[0]) * double(sw)));
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
            if (!calibrated.count(o) || graph_inputs.count(o)) continue;
            const TensorPlan& tp = plan.tensors.at(o);
            if (tp.float_output && bpu && dequantizes_accumulator(n.op_type)) continue;
            const std::string raw = o + "_float";
            qdq_pair(raw, o, acts.at(o), after);
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
