// The float executor: runs a Graph node by node on the CPU (kernels from op_registry),
// frees intermediate tensors after their last use, optionally reports every node's outputs.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include "context.hpp"
#include "ir.hpp"
#include "op_registry.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {

/// Called after each node with the node and its outputs (e.g. to feed calibration observers).
using NodeCallback = std::function<void(const Node&, const std::vector<Tensor>&)>;

/// Runs a graph. Construction sorts and validates it (every op supported, every edge
/// connected) and plans tensor slots; run() is then cheap to call repeatedly.
class Executor {
public:
    explicit Executor(Graph g) : graph_(std::move(g)) {
        graph_.name_nodes();
        graph_.sort();
        std::unordered_map<std::string, std::size_t> slot_of;
        auto slot = [&](const std::string& name) {
            auto it = slot_of.find(name);
            if (it != slot_of.end()) return it->second;
            slot_of.emplace(name, slots_);
            return slots_++;
        };
        for (const auto& kv : graph_.initializers) {
            initializer_slots_.push_back({slot(kv.first), &kv.second});
            // views of memory owned elsewhere may change behind the Executor's back: never cached
            if (kv.second.owns_data()) weight_cache_.add_constant(kv.second.raw());
        }
        for (const auto& in : graph_.inputs) input_slots_.push_back(slot(in));
        for (const Node& n : graph_.nodes) {
            Step s;
            s.node = &n;
            s.op = &require_op(n, graph_.opset);
            for (const auto& i : n.inputs) s.inputs.push_back(i.empty() ? kNone : slot(i));
            for (const auto& o : n.outputs) s.outputs.push_back(o.empty() ? kNone : slot(o));
            steps_.push_back(std::move(s));
        }
        for (const auto& o : graph_.outputs) output_slots_.push_back(slot(o));
        // last use of each slot: free it after that step unless it is an output or initializer
        std::vector<std::int64_t> last(slots_, -1);
        for (std::size_t i = 0; i < steps_.size(); ++i)
            for (std::size_t in : steps_[i].inputs)
                if (in != kNone) last[in] = std::int64_t(i);
        std::vector<bool> keep(slots_, false);
        for (auto s : output_slots_) keep[s] = true;
        for (const auto& is : initializer_slots_) keep[is.first] = true;
        for (std::size_t s = 0; s < slots_; ++s)
            if (!keep[s] && last[s] >= 0) steps_[std::size_t(last[s])].release.push_back(s);
    }

    // Steps point into graph_: an Executor stays where it was built (hold it by unique_ptr to move it).
    Executor(const Executor&) = delete;
    Executor& operator=(const Executor&) = delete;

    const Graph& graph() const { return graph_; }

    /// Runs on inputs given in the order of graph().inputs; returns graph().outputs in order.
    std::vector<Tensor> run(const std::vector<Tensor>& inputs, const ExecContext& ctx,
                            const NodeCallback& on_node = nullptr) const {
        BPUQ_CHECK(inputs.size() == input_slots_.size(), "graph.input",
                   "graph '" + graph_.name + "' has " + std::to_string(input_slots_.size()) + " inputs, got " +
                       std::to_string(inputs.size()));
        // kernels may keep packed copies of the (immutable) initializers across runs
        PackedWeightCache::Scope cache_scope(&weight_cache_);
        std::vector<Tensor> slots(slots_);
        for (const auto& is : initializer_slots_) slots[is.first] = *is.second;
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            check_input(graph_.inputs[i], inputs[i]);
            slots[input_slots_[i]] = inputs[i];
        }
        std::vector<const Tensor*> in_ptrs;
        std::vector<Tensor> outs;
        for (const Step& s : steps_) {
            in_ptrs.assign(s.inputs.size(), nullptr);
            for (std::size_t i = 0; i < s.inputs.size(); ++i)
                if (s.inputs[i] != kNone) in_ptrs[i] = &slots[s.inputs[i]];
            outs.assign(s.outputs.size(), Tensor());
            try {
                s.op->run(*s.node, in_ptrs, outs, ctx, graph_.opset);
            } catch (const Error& e) {
                if (std::string(e.what()).find(s.node->name) != std::string::npos) throw;
                BPUQ_THROW(e.id(), s.node->describe() + ": " + e.what());
            }
            if (on_node) on_node(*s.node, outs);
            for (std::size_t i = 0; i < s.outputs.size(); ++i)
                if (s.outputs[i] != kNone) slots[s.outputs[i]] = std::move(outs[i]);
            for (std::size_t r : s.release) slots[r] = Tensor();
        }
        std::vector<Tensor> result;
        for (auto o : output_slots_) result.push_back(slots[o]);
        return result;
    }

    /// Runs on named inputs; returns outputs by name.
    std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& inputs, const ExecContext& ctx) const {
        std::vector<Tensor> ordered;
        for (const auto& name : graph_.inputs) {
            auto it = inputs.find(name);
            BPUQ_CHECK(it != inputs.end(), "graph.input", "graph input '" + name + "' was not given");
            ordered.push_back(it->second);
        }
        const auto outs = run(ordered, ctx);
        std::map<std::string, Tensor> r;
        for (std::size_t i = 0; i < outs.size(); ++i) r[graph_.outputs[i]] = outs[i];
        return r;
    }

private:
    static constexpr std::size_t kNone = ~std::size_t(0);
    struct Step {
        const Node* node = nullptr;
        const OpSchema* op = nullptr;
        std::vector<std::size_t> inputs, outputs, release;
    };

    void check_input(const std::string& name, const Tensor& t) const {
        const Value* v = graph_.find_value(name);
        if (!v) return;
        if (v->has_dtype)
            BPUQ_CHECK(v->dtype == t.dtype(), "graph.input",
                       "graph input '" + name + "' must be " + dtype_name(v->dtype) + ", got " + dtype_name(t.dtype()));
        if (v->has_shape) {
            bool ok = v->shape.size() == t.rank();
            for (std::size_t i = 0; ok && i < t.rank(); ++i) ok = v->shape[i] < 0 || v->shape[i] == t.dim(i);
            BPUQ_CHECK(ok, "graph.input",
                       "graph input '" + name + "' must have shape " + shape_to_string(v->shape) + " (-1 = any), got " +
                           shape_to_string(t.shape()));
        }
    }

    Graph graph_;
    std::size_t slots_ = 0;
    std::vector<std::pair<std::size_t, const Tensor*>> initializer_slots_;
    std::vector<std::size_t> input_slots_, output_slots_;
    std::vector<Step> steps_;
    mutable PackedWeightCache weight_cache_;
};

}  // namespace graph

BPUQ_NAMESPACE_END
