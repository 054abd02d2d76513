// Graph passes that keep float semantics: constant folding, Identity/Dropout removal,
// BatchNormalization folded into Conv/Gemm, Conv+Relu/Clip fusion, Reshape-chain
// simplification, and optimize() which runs them in a sensible order.
#pragma once

#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "context.hpp"
#include "ir.hpp"
#include "op_registry.hpp"
#include "shape_inference.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {

namespace detail {

/// Replaces every read of `from` by `to` (node inputs only).
inline void rewire(Graph& g, const std::string& from, const std::string& to) {
    for (auto& n : g.nodes)
        for (auto& i : n.inputs)
            if (i == from) i = to;
}

inline std::size_t count_readers(const Graph& g, const std::string& tensor) {
    std::size_t c = 0;
    for (const auto& n : g.nodes)
        for (const auto& i : n.inputs) c += i == tensor;
    return c + (g.is_graph_output(tensor) ? 1 : 0);
}

inline void erase_nodes(Graph& g, const std::vector<bool>& dead) {
    std::vector<Node> kept;
    for (std::size_t i = 0; i < g.nodes.size(); ++i)
        if (!dead[i]) kept.push_back(std::move(g.nodes[i]));
    g.nodes = std::move(kept);
}

}  // namespace detail

/// Evaluates every node whose inputs are all initializers and turns its outputs into
/// initializers. Returns the number of nodes folded.
inline std::size_t fold_constants(Graph& g) {
    ExecContext ctx(1);
    std::size_t folded = 0;
    std::vector<bool> dead(g.nodes.size(), false);
    for (std::size_t k = 0; k < g.nodes.size(); ++k) {
        const Node& n = g.nodes[k];
        if (n.op_type == "Dropout" && n.num_inputs() > 2) continue;  // may be random in training mode
        bool all_const = true;
        std::vector<const Tensor*> ins(n.inputs.size(), nullptr);
        for (std::size_t i = 0; i < n.inputs.size(); ++i) {
            if (n.inputs[i].empty()) continue;
            ins[i] = g.initializer(n.inputs[i]);
            all_const = all_const && ins[i] != nullptr;
        }
        if (!all_const) continue;
        const OpSchema& op = require_op(n, g.opset);
        std::vector<Tensor> outs(n.outputs.size());
        op.run(n, ins, outs, ctx, g.opset);
        for (std::size_t i = 0; i < n.outputs.size(); ++i)
            if (!n.outputs[i].empty()) g.initializers[n.outputs[i]] = outs[i].owns_data() ? outs[i] : outs[i].clone();
        dead[k] = true;
        ++folded;
    }
    detail::erase_nodes(g, dead);
    return folded;
}

/// Removes Identity and inference-mode Dropout nodes (their readers read the input
/// instead). A node whose output is a graph output is kept so output names do not change.
inline std::size_t remove_identities(Graph& g) {
    std::size_t removed = 0;
    std::vector<bool> dead(g.nodes.size(), false);
    for (std::size_t k = 0; k < g.nodes.size(); ++k) {
        const Node& n = g.nodes[k];
        const bool identity = n.op_type == "Identity";
        const bool dropout = n.op_type == "Dropout" && n.num_inputs() <= 2 &&
                             (n.outputs.size() < 2 || n.outputs[1].empty() || detail::count_readers(g, n.outputs[1]) == 0);
        if (!(identity || dropout) || n.inputs.empty() || n.inputs[0].empty()) continue;
        if (g.is_graph_output(n.outputs[0])) continue;
        detail::rewire(g, n.outputs[0], n.inputs[0]);
        dead[k] = true;
        ++removed;
    }
    detail::erase_nodes(g, dead);
    return removed;
}

/// Folds an inference-mode BatchNormalization that is the only reader of a Conv's or a
/// Gemm's output (with constant weights) into that Conv/Gemm's weights and bias.
inline std::size_t fold_batchnorm(Graph& g) {
    std::size_t folded = 0;
    std::vector<bool> dead(g.nodes.size(), false);
    for (std::size_t k = 0; k < g.nodes.size(); ++k) {
        Node& bn = g.nodes[k];
        if (bn.op_type != "BatchNormalization" || bn.attr_int("training_mode", 0) != 0) continue;
        if (bn.outputs.size() > 1 && !bn.outputs[1].empty()) continue;
        const std::int64_t p = g.producer_of(bn.inputs[0]);
        if (p < 0 || dead[std::size_t(p)] || detail::count_readers(g, bn.inputs[0]) != 1) continue;
        Node& prod = g.nodes[std::size_t(p)];
        const bool conv = prod.op_type == "Conv", gemm = prod.op_type == "Gemm";
        if (!conv && !gemm) continue;
        const Tensor* w = prod.inputs.size() > 1 ? g.initializer(prod.inputs[1]) : nullptr;
        const Tensor* b = prod.has_input(2) ? g.initializer(prod.inputs[2]) : nullptr;
        if (!w || w->dtype() != DType::float32 || (prod.has_input(2) && !b)) continue;
        const Tensor *sc = g.initializer(bn.inputs[1]), *bb = g.initializer(bn.inputs[2]);
        const Tensor *mean = g.initializer(bn.inputs[3]), *var = g.initializer(bn.inputs[4]);
        if (!sc || !bb || !mean || !var) continue;
        std::int64_t M = 0;
        bool trans_b = false;
        if (conv) M = w->dim(0);
        else {
            if (w->rank() != 2 || prod.attr_float("alpha", 1.f) != 1.f || prod.attr_float("beta", 1.f) != 1.f) continue;
            trans_b = prod.attr_int("transB", 0) != 0;
            M = trans_b ? w->dim(0) : w->dim(1);
            if (b && b->numel() != M) continue;  // a bias broadcast over rows cannot be folded per column
        }
        if (sc->numel() != M || bb->numel() != M || mean->numel() != M || var->numel() != M) continue;
        if (b && b->numel() != M) continue;
        const float eps = bn.attr_float("epsilon", 1e-5f);
        Tensor nw = w->clone();
        Tensor nb(DType::float32, {M});
        const std::int64_t per = w->numel() / M;
        for (std::int64_t m = 0; m < M; ++m) {
            const double kk = double(sc->data<float>()[m]) / std::sqrt(double(var->data<float>()[m]) + eps);
            const double b0 = b ? b->data<float>()[m] : 0.0;
            nb.data<float>()[m] = float((b0 - mean->data<float>()[m]) * kk + bb->data<float>()[m]);
            if (conv || trans_b) {
                for (std::int64_t i = 0; i < per; ++i) nw.data<float>()[m * per + i] = float(w->data<float>()[m * per + i] * kk);
            } else {
                for (std::int64_t r = 0; r < w->dim(0); ++r) nw.data<float>()[r * M + m] = float(w->data<float>()[r * M + m] * kk);
            }
        }
        const std::string wn = g.unique_name(prod.name + "_bnfolded_W"), bname = g.unique_name(prod.name + "_bnfolded_B");
        g.initializers[wn] = nw;
        g.initializers[bname] = nb;
        prod.inputs[1] = wn;
        if (prod.inputs.size() < 3) prod.inputs.resize(3);
        prod.inputs[2] = bname;
        prod.outputs[0] = bn.outputs[0];
        dead[k] = true;
        ++folded;
    }
    detail::erase_nodes(g, dead);
    g.remove_unused();
    return folded;
}

/// Fuses Relu, or Clip with constant bounds, into the Conv that is its only input's only
/// producer and reader (attributes bpuq_activation / bpuq_clip_min / bpuq_clip_max; the
/// exporter writes them back as separate nodes).
inline std::size_t fuse_conv_activation(Graph& g) {
    std::size_t fused = 0;
    std::vector<bool> dead(g.nodes.size(), false);
    for (std::size_t k = 0; k < g.nodes.size(); ++k) {
        const Node& act = g.nodes[k];
        if (act.op_type != "Relu" && act.op_type != "Clip") continue;
        const std::int64_t p = g.producer_of(act.inputs[0]);
        if (p < 0 || dead[std::size_t(p)] || detail::count_readers(g, act.inputs[0]) != 1) continue;
        Node& conv = g.nodes[std::size_t(p)];
        if (conv.op_type != "Conv" || conv.has_attr("bpuq_activation")) continue;
        float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
        if (act.op_type == "Clip") {
            if (g.opset < 11) {
                lo = act.attr_float("min", lo);
                hi = act.attr_float("max", hi);
            } else {
                const Tensor* tmin = act.has_input(1) ? g.initializer(act.inputs[1]) : nullptr;
                const Tensor* tmax = act.has_input(2) ? g.initializer(act.inputs[2]) : nullptr;
                if ((act.has_input(1) && !tmin) || (act.has_input(2) && !tmax)) continue;
                if (tmin) lo = tmin->data<float>()[0];
                if (tmax) hi = tmax->data<float>()[0];
            }
            conv.attributes["bpuq_activation"] = Attribute::make_string("Clip");
            conv.attributes["bpuq_clip_min"] = Attribute::make_float(lo);
            conv.attributes["bpuq_clip_max"] = Attribute::make_float(hi);
        } else {
            conv.attributes["bpuq_activation"] = Attribute::make_string("Relu");
        }
        conv.outputs[0] = act.outputs[0];
        dead[k] = true;
        ++fused;
    }
    detail::erase_nodes(g, dead);
    g.remove_unused();
    return fused;
}

/// Collapses chains of Reshape/Flatten/Squeeze/Unsqueeze (each the only reader of the
/// previous) into one Reshape to the final, statically known shape, and drops reshapes
/// that do not change the shape. Needs inferred shapes.
inline std::size_t simplify_reshapes(Graph& g) {
    static const std::set<std::string> kinds = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"};
    std::size_t changed = 0;
    std::vector<bool> dead(g.nodes.size(), false);
    for (std::size_t k = 0; k < g.nodes.size(); ++k) {
        Node& n = g.nodes[k];
        if (!kinds.count(n.op_type)) continue;
        const Value* out = g.find_value(n.outputs[0]);
        if (!out || !out->has_shape) continue;
        bool static_shape = true;
        for (auto d : out->shape) static_shape = static_shape && d >= 0;
        if (!static_shape) continue;
        // walk up through reshape-like producers that only feed this chain
        std::string src = n.inputs[0];
        for (;;) {
            const std::int64_t p = g.producer_of(src);
            if (p < 0 || dead[std::size_t(p)] || !kinds.count(g.nodes[std::size_t(p)].op_type) ||
                detail::count_readers(g, src) != 1)
                break;
            dead[std::size_t(p)] = true;
            ++changed;
            src = g.nodes[std::size_t(p)].inputs[0];
        }
        const Value* in = g.find_value(src);
        if (in && in->has_shape && in->shape == out->shape && !g.is_graph_output(n.outputs[0])) {
            detail::rewire(g, n.outputs[0], src);
            dead[k] = true;
            ++changed;
            continue;
        }
        const std::string shape_name = g.unique_name(n.name + "_shape");
        g.initializers[shape_name] = Tensor::from_vector<std::int64_t>({std::int64_t(out->shape.size())}, out->shape);
        Node r;
        r.name = n.name;
        r.op_type = "Reshape";
        r.inputs = {src, shape_name};
        r.outputs = n.outputs;
        if (!(n.op_type == "Reshape" && n.inputs[0] == src)) ++changed;
        n = std::move(r);
    }
    detail::erase_nodes(g, dead);
    g.remove_unused();
    return changed;
}

/// Statistics of optimize().
struct OptimizeReport {
    std::size_t identities = 0, constants = 0, batchnorms = 0, activations = 0, reshapes = 0;
};

/// Runs all passes (float semantics are kept; the real models' outputs stay within float
/// rounding of the original). The graph must import cleanly (supported ops).
inline OptimizeReport optimize(Graph& g, bool fuse_activations = true) {
    OptimizeReport r;
    g.name_nodes();
    g.sort();
    r.identities = remove_identities(g);
    r.constants = fold_constants(g);
    g.remove_unused();
    r.batchnorms = fold_batchnorm(g);
    infer_shapes(g);
    r.reshapes = simplify_reshapes(g);
    if (fuse_activations) r.activations = fuse_conv_activation(g);
    g.sort();
    infer_shapes(g);
    return r;
}

}  // namespace graph

BPUQ_NAMESPACE_END
