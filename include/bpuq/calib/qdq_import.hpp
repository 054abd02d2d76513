// calibration_type: load from a QDQ model (e.g. quantization-aware trained, or made by another
// tool): strips QuantizeLinear/DequantizeLinear from the graph, leaving the float model they
// describe, and returns what they said — activation scales/zero points and the weights' own integer
// parameters — in bpuq's int8/int16 form (uint8 q with zero point z is int8 q - 128 with z - 128).
#pragma once

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "../graph/context.hpp"
#include "../graph/ir.hpp"
#include "../graph/op_registry.hpp"
#include "quant_plan.hpp"
#include "weights.hpp"

BPUQ_NAMESPACE_BEGIN
namespace calib {

struct QdqParameters {
    std::string path;                              ///< the QDQ model (for messages)
    std::map<std::string, QParams> activations;    ///< float tensor (after stripping) -> its quantization
    std::map<std::string, QParams> weights;        ///< float initializer -> parameters of its stored integers
    std::size_t quantize_nodes = 0, dequantize_nodes = 0, constants = 0;
};

inline bool is_qdq_node(const graph::Node& n) {
    return n.domain.empty() && (n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear");
}

/// Does the graph hold any QuantizeLinear/DequantizeLinear node?
inline bool has_qdq(const graph::Graph& g) {
    return std::any_of(g.nodes.begin(), g.nodes.end(), [](const graph::Node& n) { return is_qdq_node(n); });
}

namespace detail {

/// Scale/zero point inputs of a Q or DQ node as bpuq parameters (int8 form for uint8).
inline QParams qdq_node_params(const graph::Graph& g, const graph::Node& n, const std::string& path, DType data_type) {
    auto fail = [&](const std::string& what) { BPUQ_THROW("qdq.load", "QDQ model " + path + ": " + n.describe() + ": " + what); };
    const Tensor* s = n.has_input(1) ? g.initializer(n.inputs[1]) : nullptr;
    if (!s || s->dtype() != DType::float32 || s->numel() < 1) fail("the scale must be a float constant");
    const Tensor* z = n.has_input(2) ? g.initializer(n.inputs[2]) : nullptr;
    if (n.has_input(2) && !z) fail("the zero point must be a constant");
    if (z && z->numel() != s->numel()) fail("has " + std::to_string(s->numel()) + " scales but " + std::to_string(z->numel()) + " zero points");
    QParams q;
    q.scale.assign(s->data<float>(), s->data<float>() + s->numel());
    for (float v : q.scale)
        if (!(v > 0.0f) || !std::isfinite(v)) fail("scale " + std::to_string(v) + " is not a positive finite number");
    q.zero_point.assign(q.scale.size(), 0);
    const DType t = z ? z->dtype() : data_type;
    if (t == DType::uint8) {
        q.bits = 8;
        for (std::size_t i = 0; i < q.scale.size(); ++i) q.zero_point[i] = (z ? std::int32_t(z->data<std::uint8_t>()[i]) : 0) - 128;
    } else if (t == DType::int8) {
        q.bits = 8;
        for (std::size_t i = 0; i < q.scale.size(); ++i) q.zero_point[i] = z ? z->data<std::int8_t>()[i] : 0;
    } else if (t == DType::int16) {
        q.bits = 16;
        for (std::size_t i = 0; i < q.scale.size(); ++i) q.zero_point[i] = z ? z->data<std::int16_t>()[i] : 0;
        for (auto v : q.zero_point)
            if (v != 0) fail("int16 zero point " + std::to_string(v) + ": bpuq's int16 tensors are symmetric (zero point 0)");
    } else {
        fail(std::string("quantized type ") + dtype_name(t) + " is not supported; allowed: int8, uint8, int16");
    }
    q.axis = -1;
    if (s->numel() > 1 || s->rank() == 1) {
        const graph::Value* v = g.find_value(n.inputs[0]);
        const Tensor* c = g.initializer(n.inputs[0]);
        const std::int64_t rank = c ? std::int64_t(c->rank()) : (v && v->has_shape ? std::int64_t(v->shape.size()) : 0);
        std::int64_t axis = n.attr_int("axis", 1);
        if (axis < 0) axis += rank;
        q.axis = s->numel() > 1 ? int(axis) : -1;
    }
    q.symmetric = std::all_of(q.zero_point.begin(), q.zero_point.end(), [](std::int32_t v) { return v == 0; });
    q.narrow = false;
    return q;
}

inline void rename_reads(graph::Graph& g, const std::string& from, const std::string& to) {
    for (auto& n : g.nodes)
        for (auto& i : n.inputs)
            if (i == from) i = to;
    for (auto& o : g.outputs)
        if (o == from) o = to;
}

}  // namespace detail

/// Removes every QuantizeLinear/DequantizeLinear node of `g` (which must then be float) and
/// returns their parameters. A DequantizeLinear of a constant becomes the float constant it
/// computes (weights also keep their integer parameters); a QuantizeLinear -> DequantizeLinear pair
/// on an activation disappears, its parameters recorded on the tensor that remains (the producer's
/// output takes the DequantizeLinear's name, so consumers and graph outputs keep theirs).
inline QdqParameters strip_qdq(graph::Graph& g, const std::string& path) {
    QdqParameters r;
    r.path = path;
    auto fail = [&](const std::string& what) { BPUQ_THROW("qdq.load", "QDQ model " + path + ": " + what); };
    std::vector<bool> dead(g.nodes.size(), false);
    graph::ExecContext ctx(1);
    // 1. DequantizeLinear of constants: weights, biases
    for (std::size_t k = 0; k < g.nodes.size(); ++k) {
        const graph::Node& n = g.nodes[k];
        if (!is_qdq_node(n) || n.op_type != "DequantizeLinear" || !g.is_initializer(n.inputs[0])) continue;
        const Tensor& q = *g.initializer(n.inputs[0]);
        std::vector<const Tensor*> in;
        for (std::size_t i = 0; i < n.inputs.size(); ++i) in.push_back(n.has_input(i) ? g.initializer(n.inputs[i]) : nullptr);
        if (n.has_input(1) && !in[1]) fail(n.describe() + ": the scale must be a constant");
        if (n.has_input(2) && !in[2]) fail(n.describe() + ": the zero point must be a constant");
        std::vector<Tensor> out(1);
        graph::require_op(n, g.opset).run(n, in, out, ctx, g.opset);
        if (q.dtype() == DType::int8 || q.dtype() == DType::uint8 || q.dtype() == DType::int16)
            r.weights[n.outputs[0]] = detail::qdq_node_params(g, n, path, q.dtype());
        g.initializers[n.outputs[0]] = out[0].owns_data() ? out[0] : out[0].clone();
        dead[k] = true;
        ++r.dequantize_nodes;
        ++r.constants;
    }
    // 2. QuantizeLinear -> DequantizeLinear pairs on activations
    for (std::size_t k = 0; k < g.nodes.size(); ++k) {
        if (dead[k]) continue;
        const graph::Node qn = g.nodes[k];
        if (!is_qdq_node(qn) || qn.op_type != "QuantizeLinear") continue;
        const Tensor* zq = qn.has_input(2) ? g.initializer(qn.inputs[2]) : nullptr;
        const QParams p = detail::qdq_node_params(g, qn, path, zq ? zq->dtype() : DType::uint8);
        if (p.axis >= 0)
            fail(qn.describe() + " quantizes activation '" + qn.inputs[0] + "' per channel (axis " + std::to_string(p.axis) +
                 "); loading a QDQ model takes per-tensor activations only (per-channel activations come from calibration "
                 "with per_channel: true, docs/ARITHMETIC.md)");
        const std::string xf = qn.inputs[0], xq = qn.outputs[0];
        if (g.is_graph_output(xq)) fail(qn.describe() + ": its integer output '" + xq + "' is a graph output; bpuq needs float outputs");
        std::vector<std::size_t> dqs;
        for (std::size_t c : g.consumers_of(xq)) {
            const graph::Node& d = g.nodes[c];
            if (d.op_type != "DequantizeLinear" || d.inputs[0] != xq)
                fail(d.describe() + " reads the integer tensor '" + xq + "' of " + qn.describe() +
                     "; only DequantizeLinear may read a QuantizeLinear's output");
            const QParams pd = detail::qdq_node_params(g, d, path, zq ? zq->dtype() : DType::uint8);
            if (pd.scale != p.scale || pd.zero_point != p.zero_point)
                fail(d.describe() + " dequantizes '" + xq + "' with other parameters than " + qn.describe() + " quantized it");
            dqs.push_back(c);
        }
        if (dqs.empty()) fail(qn.describe() + ": no DequantizeLinear reads its output '" + xq + "'");
        // the name that remains: the first DequantizeLinear's output, unless xf is a graph input or read elsewhere
        std::size_t xf_readers = 0;
        for (const auto& n : g.nodes)
            for (const auto& i : n.inputs) xf_readers += i == xf;
        const std::int64_t prod = g.producer_of(xf);
        std::string keep = xf;
        if (prod >= 0 && xf_readers == 1 && !g.is_graph_output(xf)) {
            keep = g.nodes[dqs[0]].outputs[0];
            for (auto& o : g.nodes[std::size_t(prod)].outputs)
                if (o == xf) o = keep;
        }
        for (std::size_t c : dqs) {
            const std::string x = g.nodes[c].outputs[0];
            if (x != keep) detail::rename_reads(g, x, keep);
            dead[c] = true;
            ++r.dequantize_nodes;
        }
        dead[k] = true;
        ++r.quantize_nodes;
        auto it = r.activations.find(keep);
        if (it != r.activations.end() && (it->second.scale != p.scale || it->second.zero_point != p.zero_point))
            fail("tensor '" + keep + "' is quantized twice with different parameters");
        r.activations[keep] = p;
    }
    for (std::size_t k = 0; k < g.nodes.size(); ++k)
        if (!dead[k] && is_qdq_node(g.nodes[k]))
            fail(g.nodes[k].describe() + " reads '" + g.nodes[k].inputs[0] +
                 "', which is neither a constant nor the output of a QuantizeLinear; bpuq reads QDQ models whose "
                 "integer tensors are weights or QuantizeLinear -> DequantizeLinear pairs");
    std::vector<graph::Node> kept;
    for (std::size_t k = 0; k < g.nodes.size(); ++k)
        if (!dead[k]) kept.push_back(std::move(g.nodes[k]));
    g.nodes = std::move(kept);
    g.remove_unused();
    // weights that turned out not to be read as weights keep their float values; drop dead records
    for (auto it = r.weights.begin(); it != r.weights.end();) it = g.is_initializer(it->first) ? std::next(it) : r.weights.erase(it);
    return r;
}

/// The QDQ model's activation parameters matched to this run's plan.
struct QdqActivationMatch {
    std::map<std::string, QParams> activations;  ///< planned tensors the QDQ model quantizes (aliases included)
    std::vector<std::string> missing;            ///< planned (calibrated) tensors it does not quantize
    std::vector<std::string> unused;             ///< tensors it quantizes that run in float here
    std::vector<std::string> notes;              ///< aliases whose QDQ parameters differ from their source
};

/// Matches the QDQ parameters against the plan of `g`. Bit widths must agree (an error names the
/// tensor, the model and how to change the plan); a passthrough output (alias) uses its source's
/// parameters. A tensor the QDQ model leaves unquantized whose only reader is a Relu/Clip it
/// quantizes (an op with a fused activation, e.g. TFLite's Add+ReLU, rounded once) takes the
/// Relu/Clip output's parameters: the op then saturates to the activation's range in one rounding
/// and the Relu/Clip requantizes with an identity multiplier — the QDQ model's arithmetic exactly.
inline QdqActivationMatch match_qdq_activations(const QdqParameters& q, const QuantPlan& plan, const graph::Graph& g) {
    QdqActivationMatch m;
    for (const auto& kv : q.activations) {
        auto it = plan.tensors.find(kv.first);
        if (it == plan.tensors.end() || !it->second.quantized) {
            m.unused.push_back(kv.first);
            continue;
        }
        const int bits = plan.tensors.at(plan.root_of(kv.first)).bits;
        BPUQ_CHECK(kv.second.bits == bits, "qdq.load",
                   "QDQ model " + q.path + ": tensor '" + kv.first + "' is quantized with " + std::to_string(kv.second.bits) +
                       " bits but this run plans " + std::to_string(bits) +
                       " bits for it; make them agree with node_info InputType/OutputType or optimization set_*_int16");
    }
    for (const auto& t : plan.calibrated) {
        auto it = q.activations.find(t);
        if (it != q.activations.end()) {
            m.activations[t] = it->second;
            continue;
        }
        const std::vector<std::size_t> readers = g.consumers_of(t);
        if (readers.size() == 1 && !g.is_graph_output(t)) {
            const graph::Node& r = g.nodes[readers[0]];
            const auto np = plan.nodes.find(r.name);
            auto out = q.activations.find(r.outputs.empty() ? std::string() : r.outputs[0]);
            if ((r.op_type == "Relu" || r.op_type == "Clip") && r.inputs[0] == t && np != plan.nodes.end() && np->second.on_bpu &&
                out != q.activations.end() && out->second.bits == plan.tensors.at(t).bits) {
                m.activations[t] = out->second;
                m.notes.push_back("tensor '" + t + "' (not quantized in the QDQ model) takes the parameters of its " + r.describe() +
                                  " output: the activation is fused in the QDQ model's arithmetic");
                continue;
            }
        }
        m.missing.push_back(t);
    }
    for (const auto& kv : plan.tensors) {
        if (!kv.second.quantized || kv.second.alias_of.empty()) continue;
        const std::string root = plan.root_of(kv.first);
        auto r = m.activations.find(root);
        if (r == m.activations.end()) continue;
        auto own = q.activations.find(kv.first);
        if (own != q.activations.end() && (own->second.scale != r->second.scale || own->second.zero_point != r->second.zero_point))
            m.notes.push_back("tensor '" + kv.first + "' passes '" + root + "' through; the QDQ model requantizes it, bpuq keeps '" +
                              root + "''s parameters");
        m.activations[kv.first] = r->second;
    }
    return m;
}

/// Replaces bpuq's weight parameters by the QDQ model's (the weights keep their own integers and
/// scales). Returns the names of BPU weights the QDQ model did not give as integers (bpuq quantizes
/// those itself). Errors name the weight when its quantization axis is not the output channel.
inline std::vector<std::string> use_qdq_weights(const QdqParameters& q, std::map<std::string, QParams>& weights) {
    std::vector<std::string> requantized;
    for (auto& kv : weights) {
        auto it = q.weights.find(kv.first);
        if (it == q.weights.end()) {
            requantized.push_back(kv.first);
            continue;
        }
        const QParams& p = it->second;
        BPUQ_CHECK(p.axis < 0 || p.axis == kv.second.axis, "qdq.load",
                   "QDQ model " + q.path + ": weight '" + kv.first + "' is quantized along axis " + std::to_string(p.axis) +
                       " but its output channels lie on axis " + std::to_string(kv.second.axis) + "; bpuq needs per-tensor or per-output-channel weights");
        kv.second = p;
    }
    return requantized;
}

}  // namespace calib
BPUQ_NAMESPACE_END
