// Accumulated error (SPEC §3 plot_acc_error): the error at every quantized node's output, in
// topological order, when a chosen set of nodes is quantized (or kept float); and the output error
// as growing prefixes of the graph are quantized (or kept float).
#pragma once

#include <set>
#include <string>
#include <vector>

#include "sensitivity.hpp"

BPUQ_NAMESPACE_BEGIN
namespace debug {

/// One curve: a value per point (node, or prefix length), under one metric.
struct ErrorCurve {
    std::string label;
    std::vector<std::string> points;  ///< node names (the x axis)
    std::vector<ErrorStats> values;
};

/// Which Calibration nodes an accumulate-error run switches on. `nodes` holds quantized node
/// names or the shortcuts "weight" / "activation" (every weight / activation Calibration node);
/// `invert` = false: only those are quantized (Horizon's quantize_node), true: everything except
/// those (non_quantize_node).
struct QuantizeSet {
    std::string label;
    std::vector<std::string> nodes;
    bool invert = false;
};

/// The modes of a QuantizeSet (errors name unknown nodes).
inline std::vector<CalibMode> modes_of(const CalibratedModel& m, const QuantizeSet& q) {
    std::vector<bool> on(m.calibrations().size(), false);
    for (const auto& name : q.nodes) {
        if (name == "weight" || name == "activation") {
            for (std::size_t c = 0; c < m.calibrations().size(); ++c)
                // a corrected bias goes with the weights: it compensates their quantization
                if ((name == "weight") != m.calibrations()[c].activation()) on[c] = true;
            continue;
        }
        const std::int64_t n = m.find_node(name);
        const std::int64_t c = m.find_calibration(name);
        BPUQ_CHECK(n >= 0 || c >= 0, "debug.node",
                   "'" + name + "' is neither a quantized node nor a Calibration node of the model (nor 'weight' / 'activation')");
        if (n >= 0)
            for (std::size_t k : m.nodes()[std::size_t(n)].calibrations) on[k] = true;
        else
            on[std::size_t(c)] = true;
    }
    std::vector<CalibMode> modes(on.size());
    for (std::size_t c = 0; c < on.size(); ++c) modes[c] = (on[c] != q.invert) ? CalibMode::quantized : CalibMode::float_;
    return modes;
}

/// Error at every quantized node's output (topological order) with the set quantized.
inline std::vector<ErrorCurve> node_error_curves(const DebugSession& session, const std::vector<QuantizeSet>& sets) {
    const CalibratedModel& m = session.model();
    std::vector<std::string> names;
    std::vector<std::size_t> slots;
    for (const auto& q : m.nodes())
        if (session.runner().has_tensor(q.output)) {
            names.push_back(q.name);
            slots.push_back(session.runner().slot(q.output));
        }
    std::vector<DebugSession::Experiment> exps;
    for (const auto& s : sets) exps.push_back({m.configure(modes_of(m, s)), false, slots});
    const auto outcomes = session.run(exps);
    std::vector<ErrorCurve> curves;
    for (std::size_t i = 0; i < sets.size(); ++i) {
        ErrorCurve c;
        c.label = sets[i].label;
        c.points = names;
        for (const auto& w : outcomes[i].watched) c.values.push_back(detail::summarize(w, session.options().average_mode));
        curves.push_back(std::move(c));
    }
    return curves;
}

/// The output error as the first k quantized nodes (topological order) are quantized
/// (`keep_float` false), or as the first k are kept float with the rest quantized (true).
/// Point k names the k-th node; each step re-runs only downstream of the node it adds.
inline ErrorCurve growing_prefix_curve(const DebugSession& session, bool keep_float) {
    const CalibratedModel& m = session.model();
    const std::size_t K = m.nodes().size();
    // the configuration after each step
    std::vector<NodeConfig> cfgs;
    auto modes = m.all(keep_float ? CalibMode::quantized : CalibMode::float_);
    for (const auto& q : m.nodes()) {
        for (std::size_t c : q.calibrations) modes[c] = keep_float ? CalibMode::float_ : CalibMode::quantized;
        cfgs.push_back(m.configure(modes));
    }
    std::vector<std::vector<ErrorStats>> per(K, std::vector<ErrorStats>(session.samples()));
    const auto& fl = session.float_runs();
    if (keep_float) session.quantized_runs();
    calib::for_each_sample(session.samples(), session.threads(), [&](int, std::size_t s, const graph::ExecContext& ctx) {
        RunValues cur = keep_float ? session.quantized_runs()[s] : fl[s];
        const NodeConfig* prev = keep_float ? &session.quantized_config() : &session.float_config();
        for (std::size_t k = 0; k < K; ++k) {
            cur = session.runner().rerun_all(cur, *prev, cfgs[k], ctx);
            prev = &cfgs[k];
            std::vector<Tensor> outs;
            for (std::size_t slot : session.compared_slots()) outs.push_back(cur[slot]);
            per[k][s] = session.output_error(s, outs);
        }
    });
    ErrorCurve c;
    c.label = keep_float ? "first k nodes float, rest quantized" : "first k nodes quantized, rest float";
    for (std::size_t k = 0; k < K; ++k) {
        c.points.push_back(m.nodes()[k].name);
        ErrorSummary sm;
        sm.per_sample = per[k];
        c.values.push_back(detail::summarize(sm, session.options().average_mode));
    }
    return c;
}

}  // namespace debug
BPUQ_NAMESPACE_END
