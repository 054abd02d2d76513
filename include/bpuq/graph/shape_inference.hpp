// Shape and dtype inference over a whole graph, with constant propagation of Shape-derived
// values so that Reshape/Slice/Resize targets computed in the graph are resolved.
#pragma once

#include "context.hpp"
#include "ir.hpp"
#include "op_registry.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {

/// Fills graph.values with the dtype and shape of every tensor it can determine. Graph
/// inputs keep their declared shapes; values the model declared are overwritten only where
/// inference knows more. Small integer tensors that depend only on constants and on known
/// shapes (Shape -> Gather -> Concat chains) are evaluated so later shapes resolve.
/// Requires a sorted graph (Graph::sort). Throws on inconsistent shapes.
inline void infer_shapes(Graph& g) {
    std::map<std::string, Tensor> constants = g.initializers;
    for (const auto& kv : g.initializers) {
        Value& v = g.value(kv.first);
        v.dtype = kv.second.dtype();
        v.has_dtype = true;
        v.shape = kv.second.shape();
        v.has_shape = true;
    }
    ExecContext ctx(1);
    for (const Node& n : g.nodes) {
        const OpSchema& op = require_op(n, g.opset);
        std::vector<InferInput> ins(n.inputs.size());
        bool all_const = true;
        for (std::size_t i = 0; i < n.inputs.size(); ++i) {
            if (n.inputs[i].empty()) continue;
            ins[i].value = &g.value(n.inputs[i]);
            auto it = constants.find(n.inputs[i]);
            ins[i].constant = it == constants.end() ? nullptr : &it->second;
            all_const = all_const && ins[i].constant != nullptr;
        }
        std::vector<Value> outs(n.outputs.size());
        for (std::size_t i = 0; i < n.outputs.size(); ++i) outs[i].name = n.outputs[i];
        try {
            op.infer(n, ins, outs, g.opset);
        } catch (const Error& e) {
            BPUQ_THROW(e.id(), std::string("shape inference: ") + e.what());
        }
        for (std::size_t i = 0; i < n.outputs.size(); ++i) {
            if (n.outputs[i].empty()) continue;
            Value& v = g.value(n.outputs[i]);
            if (outs[i].has_dtype) {
                v.dtype = outs[i].dtype;
                v.has_dtype = true;
            }
            if (outs[i].has_shape) {
                v.shape = outs[i].shape;
                v.has_shape = true;
            }
        }
        // constant propagation of small tensors (shape arithmetic); Shape needs only a shape
        const bool shape_only = n.op_type == "Shape" && ins[0].known_shape() &&
                                std::all_of(ins[0].shape().begin(), ins[0].shape().end(), [](std::int64_t d) { return d >= 0; });
        if ((all_const || shape_only) && n.op_type != "Dropout") {
            bool small = true;
            for (const auto& o : outs) small = small && o.has_shape && shape_numel(o.shape) <= 4096;
            if (!small) continue;
            std::vector<Tensor> holders;
            std::vector<const Tensor*> in_ptrs(n.inputs.size(), nullptr);
            if (shape_only) {
                holders.push_back(Tensor::borrow(ins[0].value->dtype, ins[0].shape(), nullptr));
                in_ptrs[0] = &holders[0];
            } else {
                for (std::size_t i = 0; i < ins.size(); ++i) in_ptrs[i] = ins[i].constant;
            }
            std::vector<Tensor> results(n.outputs.size());
            op.run(n, in_ptrs, results, ctx, g.opset);
            for (std::size_t i = 0; i < n.outputs.size(); ++i)
                if (!n.outputs[i].empty()) constants[n.outputs[i]] = results[i];
        }
    }
}

}  // namespace graph

BPUQ_NAMESPACE_END
