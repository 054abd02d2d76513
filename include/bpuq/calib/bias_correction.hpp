// Empirical bias correction (optimization: bias_correction, ALGORITHMS.md §3): with every upstream
// layer already quantized (and corrected), each BPU Conv/Gemm's bias gets, per output channel, the
// mean over calibration samples and space of (float output - quantized output) of its linear part
// (before the fused activation and the output quantization). Layers are corrected in topological
// order, one "level" (longest chain of Conv/Gemm above it) at a time; layers of one level do not
// depend on each other and share one pass over the samples.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "../graph/executor.hpp"
#include "../graph/op_registry.hpp"
#include "../io/calibration_data.hpp"
#include "../quant/quantize.hpp"
#include "collect.hpp"
#include "fake_quant.hpp"
#include "quant_plan.hpp"
#include "weights.hpp"

BPUQ_NAMESPACE_BEGIN
namespace calib {

struct BiasCorrectionOptions {
    std::size_t max_samples = 100;  ///< calibration samples used (0 = all)
    int threads = 1;
    Rounding rounding = Rounding::half_away_from_zero;  ///< of the quantized side (as the program rounds)
    /// Called after each level with (levels done, levels in all) — for progress output.
    std::function<void(std::size_t, std::size_t)> progress;
};

/// What was corrected in one layer.
struct LayerCorrection {
    std::string node;
    std::size_t channels = 0;
    double max_abs_shift = 0.0;   ///< largest |shift| over channels
    double mean_abs_shift = 0.0;  ///< mean |shift| over channels
    int worst_channel = 0;
    double bias_scale = 0.0;      ///< the int32 bias step s_in * s_w of the worst channel (for scale)
};

struct BiasCorrectionResult {
    std::map<std::string, std::vector<float>> biases;  ///< node name -> corrected float bias
    std::vector<LayerCorrection> layers;               ///< in correction order
    std::size_t samples = 0, levels = 0;
    /// The layer with the largest |shift| (index into layers; layers.size() if none).
    std::size_t largest() const {
        std::size_t best = layers.size();
        for (std::size_t i = 0; i < layers.size(); ++i)
            if (best == layers.size() || layers[i].max_abs_shift > layers[best].max_abs_shift) best = i;
        return best;
    }
};

namespace detail {

/// The Conv/Gemm nodes bias correction applies to: on the BPU, constant quantized weights, a
/// quantized input, and a bias that is a constant of one value per output channel (or none).
inline bool correctable(const graph::Graph& g, const graph::Node& n, const QuantPlan& plan, const std::map<std::string, QParams>& weights) {
    if (n.op_type != "Conv" && n.op_type != "Gemm") return false;
    const auto np = plan.nodes.find(n.name);
    if (np == plan.nodes.end() || !np->second.on_bpu || n.inputs.size() < 2 || !weights.count(n.inputs[1])) return false;
    if (!plan.is_quantized(n.inputs[0])) return false;
    if (plan.fixed_weights.count(n.inputs[1])) return false;  // a fixed-point conversion computes exactly what it defines
    const Tensor& w = *g.initializer(n.inputs[1]);
    std::int64_t channels = w.dim(0);
    if (n.op_type == "Gemm") {
        if (n.attr_float("alpha", 1.0f) != 1.0f || n.attr_float("beta", 1.0f) != 1.0f || n.attr_int("transA", 0) || w.rank() != 2) return false;
        channels = n.attr_int("transB", 0) ? w.dim(0) : w.dim(1);
    }
    if (!n.has_input(2)) return true;
    const Tensor* b = g.initializer(n.inputs[2]);
    return b && b->dtype() == DType::float32 && b->numel() == channels;
}

inline std::int64_t output_channels(const graph::Graph& g, const graph::Node& n) {
    const Tensor& w = *g.initializer(n.inputs[1]);
    if (n.op_type == "Conv") return w.dim(0);
    return n.attr_int("transB", 0) ? w.dim(0) : w.dim(1);
}

/// The node's linear part (no bias, no fused activation) on input x with weights w.
inline Tensor linear_output(const graph::Graph& g, const graph::Node& n, const Tensor& x, const Tensor& w) {
    graph::Node probe = n;
    probe.inputs = {"x", "w"};
    probe.outputs = {"y"};
    probe.attributes.erase("bpuq_activation");
    probe.attributes.erase("bpuq_clip_min");
    probe.attributes.erase("bpuq_clip_max");
    std::vector<const Tensor*> in{&x, &w};
    std::vector<Tensor> out(1);
    graph::ExecContext ctx(1);
    graph::require_op(probe, g.opset).run(probe, in, out, ctx, g.opset);
    return out[0];
}

/// Adds y's values per channel (axis 1) into sum (double), counting the values per channel.
inline void add_channel_sums(const Tensor& y, std::vector<double>& sum, std::vector<double>& count) {
    const std::int64_t C = y.dim(1);
    std::int64_t inner = 1;
    for (std::size_t i = 2; i < y.rank(); ++i) inner *= y.dim(i);
    const float* p = y.data<float>();
    for (std::int64_t o = 0; o < y.dim(0); ++o)
        for (std::int64_t c = 0; c < C; ++c) {
            double s = 0.0;
            const float* r = p + (o * C + c) * inner;
            for (std::int64_t i = 0; i < inner; ++i) s += r[i];
            sum[std::size_t(c)] += s;
            count[std::size_t(c)] += double(inner);
        }
}

/// Keeps only the nodes needed to compute the graph's outputs.
inline void prune_to_outputs(graph::Graph& g) {
    std::set<std::string> need(g.outputs.begin(), g.outputs.end());
    std::vector<bool> keep(g.nodes.size(), false);
    for (std::size_t k = g.nodes.size(); k-- > 0;) {
        const graph::Node& n = g.nodes[k];
        for (const auto& o : n.outputs) keep[k] = keep[k] || need.count(o);
        if (keep[k])
            for (const auto& i : n.inputs) need.insert(i);
    }
    std::vector<graph::Node> kept;
    for (std::size_t k = 0; k < g.nodes.size(); ++k)
        if (keep[k]) kept.push_back(std::move(g.nodes[k]));
    g.nodes = std::move(kept);
    g.remove_unused();
}

/// Per-channel means of the linear outputs of `layers` (node indices into `g`), where each layer
/// reads input tensor inputs[i] of `run_graph` and uses weights w[i]: one pass over the samples.
inline std::vector<std::vector<double>> channel_means(const graph::Graph& g, graph::Graph run_graph, const std::vector<std::size_t>& layers,
                                                      const std::vector<std::string>& inputs, const std::vector<Tensor>& w,
                                                      const io::CalibrationSet& data, std::size_t n, int threads) {
    std::vector<std::string> outs;
    for (const auto& i : inputs)
        if (std::find(outs.begin(), outs.end(), i) == outs.end()) outs.push_back(i);
    // graph inputs read directly by a layer are taken from the sample itself
    std::vector<std::string> from_graph;
    for (const auto& o : outs)
        if (std::find(run_graph.inputs.begin(), run_graph.inputs.end(), o) == run_graph.inputs.end()) from_graph.push_back(o);
    run_graph.outputs = from_graph;
    prune_to_outputs(run_graph);
    const graph::Executor exec{graph::Graph(run_graph)};
    const int workers = std::max(1, std::min<int>(threads, int(n)));
    std::vector<std::vector<std::vector<double>>> sum(static_cast<std::size_t>(workers)), count(static_cast<std::size_t>(workers));
    for (int wk = 0; wk < workers; ++wk)
        for (std::size_t l = 0; l < layers.size(); ++l) {
            const std::size_t C = std::size_t(output_channels(g, g.nodes[layers[l]]));
            sum[std::size_t(wk)].emplace_back(C, 0.0);
            count[std::size_t(wk)].emplace_back(C, 0.0);
        }
    for_each_sample(n, workers, [&](int wk, std::size_t s, const graph::ExecContext& ctx) {
        const std::vector<Tensor> in = data.load_sample(s);
        std::map<std::string, Tensor> value;
        for (std::size_t i = 0; i < run_graph.inputs.size() && i < in.size(); ++i) value[run_graph.inputs[i]] = in[i];
        if (!from_graph.empty()) {
            const std::vector<Tensor> y = exec.run(in, ctx);
            for (std::size_t i = 0; i < y.size(); ++i) value[from_graph[i]] = y[i];
        }
        for (std::size_t l = 0; l < layers.size(); ++l) {
            const Tensor lin = linear_output(g, g.nodes[layers[l]], value.at(inputs[l]), w[l]);
            add_channel_sums(lin, sum[std::size_t(wk)][l], count[std::size_t(wk)][l]);
        }
    });
    std::vector<std::vector<double>> mean(layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l) {
        mean[l].assign(sum[0][l].size(), 0.0);
        for (std::size_t c = 0; c < mean[l].size(); ++c) {
            double s = 0.0, k = 0.0;
            for (int wk = 0; wk < workers; ++wk) {
                s += sum[std::size_t(wk)][l][c];
                k += count[std::size_t(wk)][l][c];
            }
            mean[l][c] = k > 0 ? s / k : 0.0;
        }
    }
    return mean;
}


/// Runs a graph on every sample in stages: advance() computes, for each sample, the nodes needed
/// for some tensors that earlier stages have not run yet, keeping each sample's live values in
/// between. Between stages the graph may be rebuilt with other constants (corrected biases) as
/// long as its nodes keep their names and order; a node already run is never re-run, so a stage
/// must only need nodes whose constants are final. Constant nodes (weight fake-quant) run once
/// for all samples. Bias correction uses it to make one forward pass in all instead of one per level.
class LevelRunner {
public:
    LevelRunner(std::size_t samples, int threads)
        : workers_(std::max(1, std::min<int>(threads, int(samples)))), samples_(samples), values_(samples), remaining_(samples) {}

    int workers() const { return workers_; }

    /// Runs what `wanted` needs on every sample, then calls visit(worker, value) per sample where
    /// value(name) returns a tensor of that sample (a wanted tensor or an initializer).
    template <class Visit>
    void advance(const graph::Graph& g, const std::vector<std::string>& wanted, const io::CalibrationSet& data, Visit&& visit) {
        if (names_.empty()) {  // first stage: remember the node order, count consumers
            for (const auto& n : g.nodes) names_.push_back(n.name);
            ran_.assign(g.nodes.size(), false);
            for (const auto& n : g.nodes)
                for (const auto& i : n.inputs)
                    if (!i.empty() && !g.is_initializer(i)) ++uses_[i];
        }
        BPUQ_CHECK(g.nodes.size() == names_.size(), "calib.bias", "bias correction: the calibrated graph changed its nodes between levels");
        std::unordered_map<std::string, std::size_t> producer;
        for (std::size_t k = 0; k < g.nodes.size(); ++k) {
            BPUQ_CHECK(g.nodes[k].name == names_[k], "calib.bias",
                       "bias correction: the calibrated graph changed its nodes between levels (" + g.nodes[k].describe() + ")");
            for (const auto& o : g.nodes[k].outputs) producer[o] = k;
        }
        // the nodes this stage runs: ancestors of `wanted` not run yet, in graph order
        std::vector<bool> need(g.nodes.size(), false);
        std::vector<std::string> stack(wanted.begin(), wanted.end());
        while (!stack.empty()) {
            const std::string t = stack.back();
            stack.pop_back();
            auto p = producer.find(t);
            if (p == producer.end() || ran_[p->second] || need[p->second]) continue;
            need[p->second] = true;
            for (const auto& i : g.nodes[p->second].inputs)
                if (!i.empty()) stack.push_back(i);
        }
        std::vector<std::size_t> per_sample;
        for (std::size_t k = 0; k < g.nodes.size(); ++k) {
            if (!need[k]) continue;
            const bool constant = std::all_of(g.nodes[k].inputs.begin(), g.nodes[k].inputs.end(), [&](const std::string& i) {
                return i.empty() || g.is_initializer(i) || constants_.count(i);
            });
            if (constant) run_node(g, k, constants_, constants_, graph::ExecContext(workers_));
            else per_sample.push_back(k);
            ran_[k] = true;
        }
        const bool first = !started_;
        started_ = true;
        for_each_sample(samples_, workers_, [&](int wk, std::size_t s, const graph::ExecContext& ctx) {
            auto& v = values_[s];
            if (first) {
                const std::vector<Tensor> in = data.load_sample(s);
                for (std::size_t i = 0; i < g.inputs.size() && i < in.size(); ++i) v[g.inputs[i]] = in[i];
            }
            for (std::size_t k : per_sample) {
                run_node(g, k, v, v, ctx);
                for (const auto& i : g.nodes[k].inputs) {  // free what no later node reads
                    auto u = uses_.find(i);
                    if (u != uses_.end() && --remaining(s, i) == 0) v.erase(i);
                }
            }
            visit(wk, std::function<const Tensor&(const std::string&)>([&](const std::string& name) -> const Tensor& {
                      if (const Tensor* t = g.initializer(name)) return *t;
                      auto c = constants_.find(name);
                      if (c != constants_.end()) return c->second;
                      auto it = v.find(name);
                      BPUQ_CHECK(it != v.end(), "calib.bias", "bias correction: tensor '" + name + "' was not computed");
                      return it->second;
                  }));
        });
    }

private:
    using Values = std::unordered_map<std::string, Tensor>;

    // each sample is advanced by one thread at a time: its counters need no lock
    std::size_t& remaining(std::size_t sample, const std::string& tensor) {
        auto& r = remaining_[sample];
        auto it = r.find(tensor);
        if (it == r.end()) it = r.emplace(tensor, uses_.at(tensor)).first;
        return it->second;
    }

    void run_node(const graph::Graph& g, std::size_t k, const Values& in_values, Values& out_values, const graph::ExecContext& ctx) const {
        const graph::Node& n = g.nodes[k];
        std::vector<const Tensor*> in(n.inputs.size(), nullptr);
        for (std::size_t i = 0; i < n.inputs.size(); ++i) {
            const std::string& name = n.inputs[i];
            if (name.empty()) continue;
            if (const Tensor* t = g.initializer(name)) in[i] = t;
            else if (auto c = constants_.find(name); c != constants_.end()) in[i] = &c->second;
            else {
                auto it = in_values.find(name);
                BPUQ_CHECK(it != in_values.end(), "calib.bias", "bias correction: " + n.describe() + " reads '" + name + "' before it exists");
                in[i] = &it->second;
            }
        }
        std::vector<Tensor> out(n.outputs.size());
        graph::require_op(n, g.opset).run(n, in, out, ctx, g.opset);
        for (std::size_t o = 0; o < n.outputs.size(); ++o)
            if (!n.outputs[o].empty()) out_values[n.outputs[o]] = std::move(out[o]);
    }

    int workers_;
    std::size_t samples_;
    bool started_ = false;
    std::vector<std::string> names_;
    std::vector<bool> ran_;
    std::unordered_map<std::string, std::size_t> uses_;  ///< consumers of each non-constant tensor
    std::vector<Values> values_;                          ///< each sample's live tensors
    std::vector<std::unordered_map<std::string, std::size_t>> remaining_;  ///< each sample's unread uses
    Values constants_;
};

}  // namespace detail

/// Replaces the biases of the named Conv/Gemm nodes of `g` (adds one where a node has none). The
/// new bias initializer is named "<node>_bias_corrected". Errors name the node and the source.
inline void apply_biases(graph::Graph& g, const std::map<std::string, std::vector<float>>& biases, const std::string& source) {
    for (const auto& kv : biases) {
        const std::int64_t k = g.find_node(kv.first);
        BPUQ_CHECK(k >= 0, "calib.bias", source + ": bias of node '" + kv.first + "': the model has no node of that name");
        graph::Node& n = g.nodes[std::size_t(k)];
        BPUQ_CHECK((n.op_type == "Conv" || n.op_type == "Gemm") && n.inputs.size() >= 2 && g.is_initializer(n.inputs[1]), "calib.bias",
                   source + ": bias of " + n.describe() + ": only Conv/Gemm nodes with constant weights have corrected biases");
        const std::int64_t C = detail::output_channels(g, n);
        BPUQ_CHECK(std::int64_t(kv.second.size()) == C, "calib.bias",
                   source + ": bias of " + n.describe() + " has " + std::to_string(kv.second.size()) + " values; the node has " +
                       std::to_string(C) + " output channels");
        const std::string name = g.unique_name(n.name + "_bias_corrected");
        g.initializers[name] = Tensor::from_vector<float>({C}, kv.second);
        if (n.inputs.size() < 3) n.inputs.resize(3);
        n.inputs[2] = name;
    }
    g.remove_unused();
}

/// Computes corrected biases for every correctable BPU Conv/Gemm of `g` (the optimized float
/// graph) under the given plan and parameters. `g` itself is not changed: apply the result with
/// apply_biases() to the graph that the calibrated model, the QDQ model and the lowering read.
inline BiasCorrectionResult correct_biases(const graph::Graph& g, const QuantPlan& plan, const std::map<std::string, QParams>& acts,
                                           const std::map<std::string, QParams>& weights, const io::CalibrationSet& data,
                                           const BiasCorrectionOptions& opt = {}) {
    BiasCorrectionResult r;
    r.samples = opt.max_samples ? std::min(opt.max_samples, data.size()) : data.size();
    BPUQ_CHECK(r.samples > 0, "calib.empty", "bias correction needs calibration samples");
    // levels: 1 + the longest chain of correctable layers above a layer
    std::map<std::string, std::size_t> depth;
    std::vector<std::size_t> level_of(g.nodes.size(), 0);
    std::size_t levels = 0;
    for (std::size_t k = 0; k < g.nodes.size(); ++k) {
        const graph::Node& n = g.nodes[k];
        std::size_t d = 0;
        for (const auto& i : n.inputs) {
            auto it = depth.find(i);
            if (it != depth.end()) d = std::max(d, it->second);
        }
        if (detail::correctable(g, n, plan, weights)) {
            level_of[k] = ++d;
            levels = std::max(levels, d);
        }
        for (const auto& o : n.outputs) depth[o] = d;
    }
    r.levels = levels;
    if (levels == 0) return r;
    // float side: every layer's mean in one pass
    std::vector<std::size_t> all;
    std::vector<std::string> float_inputs;
    std::vector<Tensor> float_w, quant_w;
    std::map<std::size_t, std::size_t> slot;  // node index -> position in `all`
    const std::map<std::string, Tensor> folds = weight_folds(g, plan, acts);
    for (std::size_t k = 0; k < g.nodes.size(); ++k) {
        if (!level_of[k]) continue;
        const graph::Node& n = g.nodes[k];
        slot[k] = all.size();
        all.push_back(k);
        float_inputs.push_back(n.inputs[0]);
        const Tensor& w = *g.initializer(n.inputs[1]);
        float_w.push_back(w);
        auto fold = folds.find(n.inputs[1]);
        quant_w.push_back(fake_quantized_weight(w, weights.at(n.inputs[1]), fold == folds.end() ? nullptr : &fold->second));
    }
    const std::vector<std::vector<double>> float_mean =
        detail::channel_means(g, g, all, float_inputs, float_w, data, r.samples, opt.threads);
    // quantized side: level by level on the calibrated graph with the corrections so far; each
    // sample's run advances from where the previous level left it (every node runs once)
    graph::Graph work = g;
    detail::LevelRunner runner(r.samples, opt.threads);
    for (std::size_t level = 1; level <= levels; ++level) {
        graph::Graph cal = make_calibrated_graph(work, plan, acts, weights, "bias_correction", opt.rounding);
        cal.sort();
        std::vector<std::size_t> layers;
        std::vector<std::string> inputs;
        std::vector<Tensor> w;
        for (std::size_t k : all) {
            if (level_of[k] != level) continue;
            const std::int64_t ck = cal.find_node(g.nodes[k].name);
            BPUQ_CHECK(ck >= 0, "calib.bias", "bias correction lost " + g.nodes[k].describe() + " in the calibrated graph");
            layers.push_back(k);
            inputs.push_back(cal.nodes[std::size_t(ck)].inputs[0]);
            w.push_back(quant_w[slot.at(k)]);
        }
        std::vector<std::vector<std::vector<double>>> sum, count;
        for (int wk = 0; wk < runner.workers(); ++wk) {
            sum.emplace_back();
            count.emplace_back();
            for (std::size_t k : layers) {
                const std::size_t C = std::size_t(detail::output_channels(g, g.nodes[k]));
                sum.back().emplace_back(C, 0.0);
                count.back().emplace_back(C, 0.0);
            }
        }
        runner.advance(cal, inputs, data, [&](int wk, const std::function<const Tensor&(const std::string&)>& value) {
            for (std::size_t l = 0; l < layers.size(); ++l) {
                const Tensor lin = detail::linear_output(g, g.nodes[layers[l]], value(inputs[l]), w[l]);
                detail::add_channel_sums(lin, sum[std::size_t(wk)][l], count[std::size_t(wk)][l]);
            }
        });
        std::vector<std::vector<double>> quant_mean(layers.size());
        for (std::size_t l = 0; l < layers.size(); ++l) {
            quant_mean[l].assign(sum[0][l].size(), 0.0);
            for (std::size_t c = 0; c < quant_mean[l].size(); ++c) {
                double s = 0.0, k = 0.0;
                for (int wk = 0; wk < runner.workers(); ++wk) {
                    s += sum[std::size_t(wk)][l][c];
                    k += count[std::size_t(wk)][l][c];
                }
                quant_mean[l][c] = k > 0 ? s / k : 0.0;
            }
        }
        std::map<std::string, std::vector<float>> level_biases;
        for (std::size_t l = 0; l < layers.size(); ++l) {
            const graph::Node& n = g.nodes[layers[l]];
            const std::vector<double>& fm = float_mean[slot.at(layers[l])];
            const Tensor* b = n.has_input(2) ? g.initializer(n.inputs[2]) : nullptr;
            LayerCorrection lc;
            lc.node = n.name;
            lc.channels = fm.size();
            std::vector<float> nb(fm.size());
            for (std::size_t c = 0; c < fm.size(); ++c) {
                const double shift = fm[c] - quant_mean[l][c];
                nb[c] = static_cast<float>((b ? double(b->data<float>()[c]) : 0.0) + shift);
                lc.mean_abs_shift += std::fabs(shift) / double(fm.size());
                if (std::fabs(shift) > lc.max_abs_shift) {
                    lc.max_abs_shift = std::fabs(shift);
                    lc.worst_channel = int(c);
                }
            }
            const QParams& qw = weights.at(n.inputs[1]);
            const auto in_q = acts.find(plan.root_of(n.inputs[0]));
            if (in_q != acts.end())
                lc.bias_scale = double(weight_input_scale(in_q->second)) * qw.scale[qw.scale.size() == 1 ? 0 : std::size_t(lc.worst_channel)];
            level_biases[n.name] = nb;
            r.biases[n.name] = nb;
            r.layers.push_back(lc);
        }
        apply_biases(work, level_biases, "bias correction");
        if (opt.progress) opt.progress(level, levels);
    }
    return r;
}

}  // namespace calib
BPUQ_NAMESPACE_END
