// CachedRunner: runs a graph under a node configuration and, given the values of an earlier run,
// re-runs only the nodes downstream of what changed — the debug tool's way of quantizing one
// node at a time without a full forward pass per node.
#pragma once

#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "../graph/context.hpp"
#include "../graph/ir.hpp"
#include "../graph/op_registry.hpp"

BPUQ_NAMESPACE_BEGIN
namespace debug {

/// One node per step of the sorted graph (an ordinary node or a variant of a Calibration node).
using NodeConfig = std::vector<const graph::Node*>;

/// Every tensor of one run, by slot (graph inputs, initializers and node outputs).
using RunValues = std::vector<Tensor>;

class CachedRunner {
public:
    /// `g` must be sorted (CalibratedModel sorts it); the runner refers to it, it must outlive it.
    explicit CachedRunner(const graph::Graph& g) : graph_(g) {
        auto slot = [&](const std::string& name) {
            auto it = slot_of_.find(name);
            if (it != slot_of_.end()) return it->second;
            slot_of_.emplace(name, slots_);
            return slots_++;
        };
        for (const auto& kv : g.initializers) initializer_slots_.push_back({slot(kv.first), &kv.second});
        for (const auto& in : g.inputs) input_slots_.push_back(slot(in));
        steps_.resize(g.nodes.size());
        for (std::size_t i = 0; i < g.nodes.size(); ++i) {
            const graph::Node& n = g.nodes[i];
            Step& s = steps_[i];
            s.op = &graph::require_op(n, g.opset);
            for (const auto& x : n.inputs) s.inputs.push_back(x.empty() ? kNone : slot(x));
            for (const auto& x : n.outputs) s.outputs.push_back(x.empty() ? kNone : slot(x));
        }
        for (const auto& o : g.outputs) output_slots_.push_back(slot(o));
        last_use_.assign(slots_, -1);
        for (std::size_t i = 0; i < steps_.size(); ++i)
            for (std::size_t in : steps_[i].inputs)
                if (in != kNone) last_use_[in] = std::int64_t(i);
        for (std::size_t o : output_slots_) last_use_[o] = std::int64_t(steps_.size());
    }

    const graph::Graph& graph() const { return graph_; }
    std::size_t slot_count() const { return slots_; }
    const std::vector<std::size_t>& output_slots() const { return output_slots_; }

    /// The slot of a tensor; an error naming the tensor if the graph has none.
    std::size_t slot(const std::string& tensor) const {
        auto it = slot_of_.find(tensor);
        BPUQ_CHECK(it != slot_of_.end(), "debug.tensor", "the model has no tensor named '" + tensor + "'");
        return it->second;
    }
    bool has_tensor(const std::string& tensor) const { return slot_of_.count(tensor) != 0; }

    /// A full run keeping every value. `on_step(step, values)` (optional) sees the values after
    /// each step, e.g. to compare them with a reference as they appear.
    template <class OnStep>
    RunValues run_all(const std::vector<Tensor>& inputs, const NodeConfig& cfg, const graph::ExecContext& ctx,
                      OnStep&& on_step) const {
        check_config(cfg);
        BPUQ_CHECK(inputs.size() == input_slots_.size(), "debug.input",
                   "the model has " + std::to_string(input_slots_.size()) + " inputs, the sample has " + std::to_string(inputs.size()));
        RunValues v(slots_);
        for (const auto& is : initializer_slots_) v[is.first] = *is.second;
        for (std::size_t i = 0; i < inputs.size(); ++i) v[input_slots_[i]] = inputs[i];
        for (std::size_t i = 0; i < steps_.size(); ++i) {
            run_step(i, *cfg[i], v, v, ctx);
            on_step(i, v);
        }
        return v;
    }
    RunValues run_all(const std::vector<Tensor>& inputs, const NodeConfig& cfg, const graph::ExecContext& ctx) const {
        return run_all(inputs, cfg, ctx, [](std::size_t, const RunValues&) {});
    }

    /// Re-runs under `cfg` starting from `base` (the values of a run under `base_cfg`): only steps
    /// whose node differs or whose inputs changed are recomputed; an output equal bit for bit to
    /// the base stops the change from spreading. Returns the values of `wanted` slots.
    std::vector<Tensor> rerun(const RunValues& base, const NodeConfig& base_cfg, const NodeConfig& cfg,
                              const std::vector<std::size_t>& wanted, const graph::ExecContext& ctx) const {
        RunValues changed;
        std::vector<bool> dirty;
        rerun_impl(base, base_cfg, cfg, ctx, changed, dirty, &wanted);
        std::vector<Tensor> out;
        for (std::size_t w : wanted) out.push_back(dirty[w] ? changed[w] : base[w]);
        return out;
    }

    /// Like rerun, but returns every value of the new run (to chain experiments).
    RunValues rerun_all(const RunValues& base, const NodeConfig& base_cfg, const NodeConfig& cfg, const graph::ExecContext& ctx) const {
        RunValues changed;
        std::vector<bool> dirty;
        rerun_impl(base, base_cfg, cfg, ctx, changed, dirty, nullptr);
        RunValues v = base;
        for (std::size_t s = 0; s < slots_; ++s)
            if (dirty[s]) v[s] = changed[s];
        return v;
    }

    /// Number of steps a rerun from base_cfg to cfg could touch at most (for reports).
    std::size_t first_changed_step(const NodeConfig& base_cfg, const NodeConfig& cfg) const {
        for (std::size_t i = 0; i < cfg.size(); ++i)
            if (cfg[i] != base_cfg[i]) return i;
        return cfg.size();
    }

private:
    static constexpr std::size_t kNone = ~std::size_t(0);
    struct Step {
        const graph::OpSchema* op = nullptr;
        std::vector<std::size_t> inputs, outputs;
    };

    void check_config(const NodeConfig& cfg) const {
        BPUQ_CHECK(cfg.size() == steps_.size(), "debug.config",
                   "a configuration needs one node per step (" + std::to_string(steps_.size()) + "), got " + std::to_string(cfg.size()));
    }

    /// Runs step i with node `n`, reading inputs from `in` and writing outputs into `out`.
    void run_step(std::size_t i, const graph::Node& n, const RunValues& in, RunValues& out, const graph::ExecContext& ctx) const {
        const Step& s = steps_[i];
        std::vector<const Tensor*> ptrs(s.inputs.size(), nullptr);
        for (std::size_t k = 0; k < s.inputs.size(); ++k)
            if (s.inputs[k] != kNone) ptrs[k] = &in[s.inputs[k]];
        std::vector<Tensor> outs(s.outputs.size());
        try {
            s.op->run(n, ptrs, outs, ctx, graph_.opset);
        } catch (const Error& e) {
            if (std::string(e.what()).find(n.name) != std::string::npos) throw;
            BPUQ_THROW(e.id(), n.describe() + ": " + e.what());
        }
        for (std::size_t k = 0; k < s.outputs.size(); ++k)
            if (s.outputs[k] != kNone) out[s.outputs[k]] = std::move(outs[k]);
    }

    static bool same_bits(const Tensor& a, const Tensor& b) {
        if (a.raw() == b.raw()) return true;
        return a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
               std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
    }

    void rerun_impl(const RunValues& base, const NodeConfig& base_cfg, const NodeConfig& cfg, const graph::ExecContext& ctx,
                    RunValues& changed, std::vector<bool>& dirty, const std::vector<std::size_t>* wanted) const {
        check_config(cfg);
        check_config(base_cfg);
        BPUQ_CHECK(base.size() == slots_, "debug.config", "base values come from another graph");
        changed.assign(slots_, Tensor());
        dirty.assign(slots_, false);
        std::vector<bool> keep(slots_, wanted == nullptr);
        if (wanted)
            for (std::size_t w : *wanted) keep[w] = true;
        std::vector<const Tensor*> ptrs;
        for (std::size_t i = first_changed_step(base_cfg, cfg); i < steps_.size(); ++i) {
            const Step& s = steps_[i];
            bool touched = cfg[i] != base_cfg[i];
            for (std::size_t in : s.inputs) touched = touched || (in != kNone && dirty[in]);
            if (touched) {
                ptrs.assign(s.inputs.size(), nullptr);
                for (std::size_t k = 0; k < s.inputs.size(); ++k)
                    if (s.inputs[k] != kNone) ptrs[k] = dirty[s.inputs[k]] ? &changed[s.inputs[k]] : &base[s.inputs[k]];
                std::vector<Tensor> outs(s.outputs.size());
                const graph::Node& n = *cfg[i];
                try {
                    s.op->run(n, ptrs, outs, ctx, graph_.opset);
                } catch (const Error& e) {
                    if (std::string(e.what()).find(n.name) != std::string::npos) throw;
                    BPUQ_THROW(e.id(), n.describe() + ": " + e.what());
                }
                for (std::size_t k = 0; k < s.outputs.size(); ++k) {
                    const std::size_t o = s.outputs[k];
                    if (o == kNone || same_bits(outs[k], base[o])) continue;
                    changed[o] = std::move(outs[k]);
                    dirty[o] = true;
                }
            }
            // free changed values nobody reads any more (unless asked for)
            for (std::size_t in : s.inputs)
                if (in != kNone && dirty[in] && !keep[in] && last_use_[in] == std::int64_t(i)) changed[in] = Tensor();
        }
    }

    const graph::Graph& graph_;
    std::unordered_map<std::string, std::size_t> slot_of_;
    std::size_t slots_ = 0;
    std::vector<std::pair<std::size_t, const Tensor*>> initializer_slots_;
    std::vector<std::size_t> input_slots_, output_slots_;
    std::vector<Step> steps_;
    std::vector<std::int64_t> last_use_;
};

}  // namespace debug
BPUQ_NAMESPACE_END
