// The calibrated (fake-quant) graph: the optimized float graph with one ai.bpuq.Calibration node
// per calibrated activation, per weight and per corrected bias. Running it simulates the integer
// model in float; the debug tool switches single Calibration nodes off (enabled = 0) to attribute
// error.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "../graph/ir.hpp"
#include "../graph/ops/bpuq_ops.hpp"
#include "quant_plan.hpp"
#include "tensor_stats.hpp"
#include "weights.hpp"

BPUQ_NAMESPACE_BEGIN
namespace calib {

/// A Calibration node carrying `p` (and, for the record, the method that chose it).
inline graph::Node make_calibration_node(const std::string& name, const std::string& in, const std::string& out,
                                         const QParams& p, const std::string& kind, const std::string& method,
                                         Rounding rounding = Rounding::half_away_from_zero) {
    graph::Node n;
    n.name = name;
    n.op_type = "Calibration";
    n.domain = graph::kBpuqDomain;
    n.inputs = {in};
    n.outputs = {out};
    n.attributes["bits"] = graph::Attribute::make_int(p.bits);
    n.attributes["axis"] = graph::Attribute::make_int(p.axis);
    n.attributes["narrow"] = graph::Attribute::make_int(p.narrow ? 1 : 0);
    n.attributes["scales"] = graph::Attribute::make_floats(p.scale);
    n.attributes["zero_points"] = graph::Attribute::make_ints(std::vector<std::int64_t>(p.zero_point.begin(), p.zero_point.end()));
    n.attributes["rounding"] =
        graph::Attribute::make_string(rounding == Rounding::half_to_even ? "half_to_even" : "half_away_from_zero");
    n.attributes["kind"] = graph::Attribute::make_string(kind);  // "activation" or "weight"
    n.attributes["method"] = graph::Attribute::make_string(method);
    n.attributes["enabled"] = graph::Attribute::make_int(1);
    return n;
}

/// A bias-correction Calibration node: `original` when switched off, `corrected` when on.
inline graph::Node make_bias_calibration_node(const std::string& name, const std::string& original, const std::string& corrected,
                                              const std::string& out) {
    graph::Node n;
    n.name = name;
    n.op_type = "Calibration";
    n.domain = graph::kBpuqDomain;
    n.inputs = {original, corrected};
    n.outputs = {out};
    n.attributes["kind"] = graph::Attribute::make_string("bias");
    n.attributes["method"] = graph::Attribute::make_string("bias_correction");
    n.attributes["enabled"] = graph::Attribute::make_int(1);
    return n;
}

/// Does the producer of a float model output compute it exactly from int32 (no output requantize)?
inline bool dequantizes_accumulator(const std::string& op_type) {
    return op_type == "Conv" || op_type == "Gemm" || op_type == "MatMul";
}

/// Builds the calibrated graph. Node outputs keep their names (the producer now writes
/// "<name>_float" and the Calibration node writes "<name>"), so graph outputs and consumers are
/// unchanged; graph inputs are calibrated into "<name>_calibrated" and their BPU consumers rewired.
/// `corrected_biases` (node -> float bias, from bias correction) become Calibration nodes of kind
/// "bias" between the node and its original bias, so that the model with its Calibration nodes
/// off is the float model `g`.
inline graph::Graph make_calibrated_graph(const graph::Graph& g, const QuantPlan& plan,
                                          const std::map<std::string, QParams>& activations,
                                          const std::map<std::string, QParams>& weights, const std::string& method,
                                          Rounding rounding = Rounding::half_away_from_zero,
                                          const std::map<std::string, std::vector<float>>& corrected_biases = {}) {
    graph::Graph out = g;  // keeps g's nodes until the bias names below are chosen (unique_name sees them)
    std::map<std::string, std::string> bias_input;  // node -> its calibrated bias tensor
    std::vector<graph::Node> bias_nodes;
    for (const auto& kv : corrected_biases) {
        const std::int64_t k = g.find_node(kv.first);
        BPUQ_CHECK(k >= 0, "calib.bias", "corrected bias of node '" + kv.first + "': the model has no node of that name");
        const graph::Node& n = g.nodes[std::size_t(k)];
        const std::int64_t C = static_cast<std::int64_t>(kv.second.size());
        std::string original = n.has_input(2) ? n.inputs[2] : std::string();
        const Tensor* b = original.empty() ? nullptr : g.initializer(original);
        BPUQ_CHECK(original.empty() || (b && b->dtype() == DType::float32 && b->numel() == C), "calib.bias",
                   n.describe() + ": the corrected bias needs a constant float bias of " + std::to_string(C) + " values");
        if (original.empty()) {  // no bias in the float model: its float bias is zero
            original = out.unique_name(n.name + "_bias");
            out.initializers[original] = Tensor::from_vector<float>({C}, std::vector<float>(std::size_t(C), 0.0f));
        }
        const std::string corrected = out.unique_name(n.name + "_bias_corrected");
        out.initializers[corrected] = Tensor::from_vector<float>({C}, kv.second);
        const std::string calibrated = out.unique_name(n.name + "_bias_calibrated");
        bias_nodes.push_back(make_bias_calibration_node(n.name + "_bias_calibration", original, corrected, calibrated));
        bias_input[n.name] = calibrated;
    }
    out.nodes.clear();
    std::set<std::string> graph_inputs(g.inputs.begin(), g.inputs.end());
    std::map<std::string, std::string> input_rename;  // graph input -> calibrated name
    std::map<std::string, std::string> weight_rename;
    std::vector<graph::Node> prologue;
    for (const auto& t : plan.calibrated) {
        if (!graph_inputs.count(t)) continue;
        const std::string q = t + "_calibrated";
        prologue.push_back(make_calibration_node(t + "_calibration", t, q, activations.at(t), "activation", method, rounding));
        input_rename[t] = q;
    }
    const std::map<std::string, Tensor> folds = weight_folds(g, plan, activations);
    for (const auto& kv : weights) {
        const std::string q = kv.first + "_calibrated";
        prologue.push_back(make_calibration_node(kv.first + "_calibration", kv.first, q, kv.second, "weight", "max", rounding));
        if (auto f = folds.find(kv.first); f != folds.end()) {  // a per-channel input's scales, folded in
            const std::string fname = out.unique_name(kv.first + "_fold");
            out.initializers[fname] = f->second;
            prologue.back().inputs.push_back(fname);
        }
        weight_rename[kv.first] = q;
    }
    prologue.insert(prologue.end(), bias_nodes.begin(), bias_nodes.end());
    out.nodes = prologue;
    const std::set<std::string> calibrated(plan.calibrated.begin(), plan.calibrated.end());
    for (graph::Node n : g.nodes) {
        const bool bpu = plan.nodes.at(n.name).on_bpu;
        if (auto b = bias_input.find(n.name); b != bias_input.end()) {
            if (n.inputs.size() < 3) n.inputs.resize(3);
            n.inputs[2] = b->second;
        }
        for (auto& i : n.inputs) {
            auto r = input_rename.find(i);
            if (r != input_rename.end()) i = r->second;  // every consumer sees the quantized input
            auto w = weight_rename.find(i);
            if (bpu && w != weight_rename.end()) i = w->second;
        }
        std::vector<graph::Node> after;
        for (auto& o : n.outputs) {
            const auto tpi = plan.tensors.find(o);
            const bool regrid = bpu && tpi != plan.tensors.end() && tpi->second.regrid;
            if ((!calibrated.count(o) && !regrid) || graph_inputs.count(o)) continue;
            const TensorPlan& tp = tpi->second;
            if (tp.float_output && bpu && dequantizes_accumulator(n.op_type)) continue;  // int32 -> float, exact
            const std::string raw = o + "_float";
            after.push_back(make_calibration_node(o + "_calibration", raw, o, activations.at(plan.root_of(o)), "activation",
                                                  method, rounding));
            o = raw;
        }
        out.nodes.push_back(std::move(n));
        for (auto& a : after) out.nodes.push_back(std::move(a));
    }
    out.values.clear();  // shapes are re-inferred by whoever needs them
    for (const auto& i : g.inputs)
        if (const graph::Value* v = g.find_value(i)) out.values[i] = *v;
    for (const auto& o : g.outputs)
        if (const graph::Value* v = g.find_value(o)) out.values[o] = *v;
    return out;
}

/// Switches every Calibration node whose name is in `names` (or all, if `names` is empty and
/// `all` is true) on or off.
inline void set_calibration_enabled(graph::Graph& g, const std::set<std::string>& names, bool enabled, bool all = false) {
    for (auto& n : g.nodes)
        if (n.op_type == "Calibration" && n.domain == graph::kBpuqDomain && (all || names.count(n.name)))
            n.attributes["enabled"] = graph::Attribute::make_int(enabled ? 1 : 0);
}

}  // namespace calib
BPUQ_NAMESPACE_END
