// The quantization plan: where every node runs (BPU or CPU, and why) and, for every activation
// tensor, whether it is quantized, with how many bits, and whether it shares another tensor's
// scale. Built from the graph and the config (node_info, run_on_cpu/bpu, optimization, march).
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "../config/convert_config.hpp"
#include "../core/qparams.hpp"
#include "../graph/ir.hpp"
#include "op_support.hpp"

BPUQ_NAMESPACE_BEGIN
namespace calib {

struct NodePlan {
    bool on_bpu = false;
    QuantRole role = QuantRole::cpu_only;
    std::string reason;  ///< why it runs where it runs (for the log's node table)
};

struct TensorPlan {
    bool quantized = false;  ///< an activation seen by at least one BPU node
    int bits = 8;
    std::string alias_of;    ///< passthrough output: uses this tensor's parameters ("" = own)
    /// An alias whose producer interpolates (bilinear Resize): same parameters, but its values are
    /// rounded onto that grid, so the calibrated and QDQ models quantize it as well.
    bool regrid = false;
    bool model_output = false;
    bool float_output = false;  ///< a model output that stays float (the producer dequantizes)
    /// Parameters fixed by convention instead of calibration: image inputs (0..255 pixels) are
    /// int8 with scale 1 and zero point -128, i.e. q = x - 128 exactly (Horizon's "_128" types).
    bool fixed = false;
    QParams fixed_params;
    /// May carry one scale per channel (axis 1) when per_channel is on: its producer writes and
    /// every consumer reads per-channel parameters exactly (per_channel_eligible below).
    bool channel_ok = false;
    std::string channel_reason;  ///< why not, for the log ("" when channel_ok)
};

struct QuantPlan {
    std::map<std::string, NodePlan> nodes;
    std::map<std::string, TensorPlan> tensors;
    std::vector<std::string> notes;  ///< decisions worth a log line (int16 fallbacks, overrides)

    /// Tensors that need their own calibration (quantized, not an alias), in graph order.
    std::vector<std::string> calibrated;

    /// Weights whose parameters are fixed by convention instead of derived from their values
    /// (the fixed-point coefficients of an inserted colour conversion, flow/colour_conversion.hpp).
    std::map<std::string, QParams> fixed_weights;

    /// The tensor whose parameters `t` uses (itself unless it is a passthrough alias).
    std::string root_of(const std::string& t) const {
        std::string cur = t;
        for (int guard = 0; guard < 100000; ++guard) {
            auto it = tensors.find(cur);
            if (it == tensors.end() || it->second.alias_of.empty()) return cur;
            cur = it->second.alias_of;
        }
        return cur;
    }
    bool is_quantized(const std::string& t) const {
        auto it = tensors.find(t);
        return it != tensors.end() && it->second.quantized;
    }
};

namespace detail {
inline bool is_float_activation(const graph::Graph& g, const std::string& t) {
    if (t.empty() || g.is_initializer(t)) return false;
    const graph::Value* v = g.find_value(t);
    return !v || !v->has_dtype || v->dtype == DType::float32;
}
}  // namespace detail

/// Marks the activation tensors that can be quantized per channel (TensorPlan::channel_ok) and
/// says for the others why not. Per-channel activations (docs/ARITHMETIC.md §"Per-channel
/// activations") are int8 tensors [N, C, ...] whose channels share one zero point and differ in
/// their scales. A Conv, Gemm or MatMul producer writes them through its per-output-channel
/// multipliers; a Conv, Gemm or MatMul reading one folds the input channels' scales into its
/// weights (weights.hpp); MaxPool, Identity and Dropout pass them on; CPU nodes read them
/// dequantized. Every other BPU op has one scale per operand, so its inputs stay per tensor.
inline void mark_per_channel_tensors(const graph::Graph& g, QuantPlan& plan) {
    std::map<std::string, const graph::Node*> producer;
    std::map<std::string, std::vector<std::pair<const graph::Node*, std::size_t>>> consumers;
    std::map<std::string, int> uses;  // initializer -> number of reading nodes
    for (const auto& n : g.nodes) {
        for (const auto& o : n.outputs) producer[o] = &n;
        for (std::size_t i = 0; i < n.inputs.size(); ++i) {
            consumers[n.inputs[i]].push_back({&n, i});
            if (g.is_initializer(n.inputs[i])) ++uses[n.inputs[i]];
        }
    }
    auto rank_of = [&](const std::string& t) -> int {
        const graph::Value* v = g.find_value(t);
        return v && v->has_shape ? static_cast<int>(v->shape.size()) : -1;
    };
    auto channel_keeping = [](const std::string& op) {
        return op == "MaxPool" || op == "GlobalMaxPool" || op == "Identity" || op == "Dropout";
    };
    auto folding_reader = [&](const graph::Node& n, std::size_t index) -> std::string {
        if (index != 0) return "read as operand " + std::to_string(index) + " of " + n.describe();
        if (n.op_type != "Conv" && n.op_type != "Gemm" && n.op_type != "MatMul")
            return n.describe() + " takes one scale per input";
        if (!n.has_input(1) || !g.is_initializer(n.inputs[1]) || g.initializer(n.inputs[1])->dtype() != DType::float32)
            return n.describe() + " has no constant float weights to fold the channel scales into";
        if (uses[n.inputs[1]] > 1) return "the weights of " + n.describe() + " are shared with another node";
        if (plan.fixed_weights.count(n.inputs[1])) return n.describe() + " has fixed-point weights";
        if (n.op_type != "Conv" && rank_of(n.inputs[0]) != 2) return n.describe() + " reads a tensor of rank other than 2";
        return "";
    };
    // aliases grouped under their root
    std::map<std::string, std::vector<std::string>> members;
    for (const auto& kv : plan.tensors)
        if (kv.second.quantized) members[plan.root_of(kv.first)].push_back(kv.first);
    for (auto& kv : members) {
        const std::string& root = kv.first;
        TensorPlan& tp = plan.tensors[root];
        std::string why;
        const int rank = rank_of(root);
        if (tp.bits != 8) why = "int16";
        else if (tp.fixed) why = "image input with fixed parameters";
        else if (rank < 2) why = "unknown shape or rank < 2";
        if (why.empty()) {
            auto p = producer.find(root);
            if (p != producer.end()) {
                const graph::Node& n = *p->second;
                const NodePlan& np = plan.nodes.at(n.name);
                const std::string act = n.attr_string("bpuq_activation", "");
                const float clip_lo = act == "Relu" ? 0.0f : act == "Clip" ? n.attr_float("bpuq_clip_min", -INFINITY) : -INFINITY;
                const float clip_hi = act == "Clip" ? n.attr_float("bpuq_clip_max", INFINITY) : INFINITY;
                if (!np.on_bpu) why = "produced on the CPU";
                else if (n.op_type != "Conv" && n.op_type != "Gemm" && n.op_type != "MatMul")
                    why = "produced by " + n.describe() + ", which writes one scale";
                else if (n.op_type != "Conv" && rank != 2) why = "produced by " + n.describe() + " with rank other than 2";
                else if (clip_lo != 0.0f && (std::isfinite(clip_lo) || std::isfinite(clip_hi)))
                    why = "the fused clip of " + n.describe() + " does not start at 0";  // its bounds would differ per channel
            }
        }
        for (const auto& m : kv.second) {
            if (!why.empty()) break;
            const TensorPlan& mp = plan.tensors[m];
            if (mp.model_output && !mp.float_output) why = "an integer model output";
            if (m != root) {
                auto p = producer.find(m);
                if (p == producer.end() || !channel_keeping(p->second->op_type)) why = "aliased by a node that moves channels";
            }
            for (const auto& c : consumers[m]) {
                if (!why.empty()) break;
                const NodePlan& np = plan.nodes.at(c.first->name);
                if (!np.on_bpu) continue;  // reads the dequantized float tensor
                if (np.role == QuantRole::passthrough && channel_keeping(c.first->op_type) && c.second == 0) continue;
                why = folding_reader(*c.first, c.second);
            }
        }
        for (const auto& m : kv.second) {
            plan.tensors[m].channel_ok = why.empty();
            plan.tensors[m].channel_reason = why;
        }
    }
}

/// Builds the plan. Errors name the node when the config asks for something impossible
/// (a node that does not exist, run_on_bpu for an op without an integer kernel).
inline QuantPlan make_quant_plan(const graph::Graph& g, const config::ConvertConfig& cfg) {
    QuantPlan plan;
    std::set<std::string> node_names;
    for (const auto& n : g.nodes) node_names.insert(n.name);
    auto check_node = [&](const std::string& name, const std::string& key) {
        if (node_names.count(name)) return;
        std::vector<std::string> all(node_names.begin(), node_names.end());
        const std::string near = config::nearest(name, all);
        BPUQ_THROW("config.node", "config " + cfg.source + ": " + key + ": the model has no node named '" + name + "'" +
                                      (near.empty() ? std::string() : " (did you mean '" + near + "'?)"));
    };
    for (const auto& kv : cfg.node_info) check_node(kv.first, "model_parameters.node_info");
    for (const auto& n : cfg.run_on_cpu) check_node(n, "calibration_parameters.run_on_cpu");
    for (const auto& n : cfg.run_on_bpu) check_node(n, "calibration_parameters.run_on_bpu");

    // ---- placement ----
    for (const auto& n : g.nodes) {
        NodePlan np;
        np.role = quant_role(n.op_type);
        // nodes that see no float activation (shape arithmetic, constants) stay on the CPU
        bool float_in = false;
        for (const auto& i : n.inputs) float_in = float_in || detail::is_float_activation(g, i);
        const auto info = cfg.node_info.find(n.name);
        const bool forced_cpu = std::count(cfg.run_on_cpu.begin(), cfg.run_on_cpu.end(), n.name) ||
                                (info != cfg.node_info.end() && info->second.on == "CPU");
        const bool forced_bpu = std::count(cfg.run_on_bpu.begin(), cfg.run_on_bpu.end(), n.name) ||
                                (info != cfg.node_info.end() && info->second.on == "BPU");
        // an op with integer kernels whose attributes or shapes fall outside them runs on the CPU
        std::string refusal;
        if (n.op_type == "Resize" || n.op_type == "Upsample") {
            refusal = resize_integer_refusal(g, n);
            if (!refusal.empty()) np.role = QuantRole::cpu_only;
        }
        if (np.role == QuantRole::cpu_only) {
            const std::string why = refusal.empty() ? "no integer kernel for " + n.op_type
                                                    : "no integer kernel for this " + n.op_type + ": " + refusal;
            BPUQ_CHECK(!forced_bpu, "config.node",
                       "config " + cfg.source + ": node '" + n.name + "' (" + n.op_type + ") cannot run on the BPU: " + why);
            np.on_bpu = false;
            np.reason = why;
        } else if (forced_cpu) {
            np.on_bpu = false;
            np.reason = "run_on_cpu / node_info ON: CPU";
        } else if (!float_in) {
            np.on_bpu = false;
            np.reason = "no float activation input (shape or constant computation)";
        } else {
            np.on_bpu = true;
            np.reason = forced_bpu ? "run_on_bpu / node_info ON: BPU" : "";
        }
        plan.nodes[n.name] = np;
    }

    // ---- quantized tensors: every float activation that touches a BPU node ----
    auto touch = [&](const std::string& t) {
        if (!detail::is_float_activation(g, t)) return;
        plan.tensors[t].quantized = true;
    };
    for (const auto& n : g.nodes) {
        if (!plan.nodes[n.name].on_bpu) continue;
        for (const auto& i : n.inputs) touch(i);
        for (const auto& o : n.outputs) touch(o);
    }
    // passthrough outputs alias their (first) input
    for (const auto& n : g.nodes) {
        const NodePlan& np = plan.nodes[n.name];
        if (!np.on_bpu || np.role != QuantRole::passthrough || n.inputs.empty()) continue;
        for (const auto& o : n.outputs)
            if (plan.is_quantized(o) && plan.is_quantized(n.inputs[0])) {
                plan.tensors[o].alias_of = n.inputs[0];
                plan.tensors[o].regrid = passthrough_interpolates(n);
            }
    }
    // model outputs: float by default (the producer dequantizes), int8/int16 when asked
    for (const auto& o : g.outputs) {
        auto it = plan.tensors.find(o);
        if (it == plan.tensors.end()) continue;
        it->second.model_output = true;
        it->second.float_output = !cfg.optimization.set_model_output_int8 && !cfg.optimization.set_model_output_int16;
    }

    // ---- bit widths ----
    auto want16 = [&](const std::string& t, const std::string& why) {
        auto it = plan.tensors.find(t);
        if (it == plan.tensors.end() || !it->second.quantized) return;
        const std::string root = plan.root_of(t);
        if (plan.tensors[root].bits != 16) plan.notes.push_back("tensor '" + root + "' is int16 (" + why + ")");
        plan.tensors[root].bits = 16;
    };
    const auto& opt = cfg.optimization;
    for (const auto& n : g.nodes) {
        if (!plan.nodes[n.name].on_bpu) continue;
        const auto info = cfg.node_info.find(n.name);
        for (std::size_t i = 0; i < n.inputs.size(); ++i) {
            if (opt.set_all_nodes_int16) want16(n.inputs[i], "set_all_nodes_int16");
            if (opt.input_int16_ops.count(n.op_type)) want16(n.inputs[i], "set_" + n.op_type + "_input_int16");
            if (info != cfg.node_info.end()) {
                auto all = info->second.input_bits.find(-1);
                auto one = info->second.input_bits.find(static_cast<int>(i));
                if ((one != info->second.input_bits.end() && one->second == 16) ||
                    (one == info->second.input_bits.end() && all != info->second.input_bits.end() && all->second == 16))
                    want16(n.inputs[i], "node_info " + n.name + " InputType");
            }
        }
        for (const auto& o : n.outputs) {
            if (opt.set_all_nodes_int16) want16(o, "set_all_nodes_int16");
            if (opt.output_int16_ops.count(n.op_type)) want16(o, "set_" + n.op_type + "_output_int16");
            if (info != cfg.node_info.end() && info->second.output_bits == 16) want16(o, "node_info " + n.name + " OutputType");
        }
    }
    for (const auto& o : g.outputs)
        if (opt.set_model_output_int16) want16(o, "set_model_output_int16");
    // aliases take their root's width
    for (auto& kv : plan.tensors)
        if (!kv.second.alias_of.empty()) kv.second.bits = plan.tensors[plan.root_of(kv.first)].bits;

    // image inputs: exact int8 pixels (x - 128) unless the input was asked to be int16
    for (const auto& spec : cfg.inputs) {
        if (!spec.is_image()) continue;
        const std::string name = spec.name.empty() && g.inputs.size() == 1 ? g.inputs[0] : spec.name;
        auto it = plan.tensors.find(name);
        if (it == plan.tensors.end() || !it->second.quantized || it->second.bits != 8) continue;
        it->second.fixed = true;
        it->second.fixed_params = qparams_from_range(0.0f, 255.0f, 8, /*symmetric=*/false);
        plan.notes.push_back("input '" + name + "' is an image: int8 pixels x - 128 (scale 1, zero point -128)");
    }

    mark_per_channel_tensors(g, plan);

    // ---- calibration order: graph inputs first, then node outputs in topological order ----
    std::set<std::string> seen;
    auto add = [&](const std::string& t) {
        auto it = plan.tensors.find(t);
        if (it == plan.tensors.end() || !it->second.quantized || !it->second.alias_of.empty() || seen.count(t)) return;
        seen.insert(t);
        plan.calibrated.push_back(t);
    };
    for (const auto& i : g.inputs) add(i);
    for (const auto& n : g.nodes) {
        for (const auto& i : n.inputs) add(i);
        for (const auto& o : n.outputs) add(o);
    }
    return plan;
}

}  // namespace calib
BPUQ_NAMESPACE_END
