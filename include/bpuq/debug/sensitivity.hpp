// Node sensitivity (SPEC §3 get_sensitivity_of_nodes, sensitivity_analysis) and the two per-node
// error views: "single" (the node quantized alone, from float inputs) and "entire" (the error
// accumulated through the fully quantized graph).
#pragma once

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "session.hpp"

BPUQ_NAMESPACE_BEGIN
namespace debug {

/// What "one node at a time" means (Horizon's node_type).
enum class NodeType { node, weight, activation };

inline const char* node_type_name(NodeType t) {
    switch (t) {
        case NodeType::node: return "node";
        case NodeType::weight: return "weight";
        case NodeType::activation: return "activation";
    }
    return "node";
}

inline NodeType parse_node_type(const std::string& s) {
    if (s == "node") return NodeType::node;
    if (s == "weight") return NodeType::weight;
    if (s == "activation") return NodeType::activation;
    BPUQ_THROW("debug.node_type", "node_type '" + s + "' is not one of node, weight, activation");
}

struct SensitivityRow {
    std::string name;      ///< the quantized node, or the Calibration node for weight/activation
    std::string op_type;   ///< op of the node; "weight"/"activation" for Calibration nodes
    std::vector<std::size_t> calibrations;  ///< the Calibration nodes switched on
    ErrorStats output;     ///< the compared model output(s) vs float (mean over samples)
    ErrorStats single;     ///< the node's own output vs float (node_type node only)
    ErrorSummary output_samples;  ///< per-sample output errors (for average_mode / tables)
};

namespace detail {
inline ErrorStats summarize(const ErrorSummary& s, bool average) {
    ErrorStats r;
    for (Metric m : {Metric::cosine_similarity, Metric::mse, Metric::mre, Metric::sqnr, Metric::chebyshev, Metric::l1, Metric::l2}) {
        const double v = s.value(m, average);
        switch (m) {
            case Metric::cosine_similarity: r.cosine = v; break;
            case Metric::mse: r.mse = v; break;
            case Metric::mre: r.mre = v; break;
            case Metric::sqnr: r.sqnr_db = v; break;
            case Metric::chebyshev: r.chebyshev = v; break;
            case Metric::l1: r.l1 = v; break;
            case Metric::l2: r.l2 = v; break;
        }
    }
    return r;
}

/// Worst first under metric m.
inline void sort_worst_first(std::vector<SensitivityRow>& rows, Metric m) {
    std::stable_sort(rows.begin(), rows.end(), [&](const SensitivityRow& a, const SensitivityRow& b) {
        return metric_higher_is_better(m) ? a.output.get(m) < b.output.get(m) : a.output.get(m) > b.output.get(m);
    });
}
}  // namespace detail

/// Quantizes one node (node_type node: the Calibration nodes of its inputs; weight/activation:
/// one Calibration node of that kind) at a time, everything else float, and measures the
/// compared output(s). `interested` limits the rows (node or Calibration node names; empty = all).
/// Rows are sorted worst first by the session's first metric. Each experiment re-runs only the
/// graph downstream of the switched node, from the cached float run.
inline std::vector<SensitivityRow> node_sensitivity(const DebugSession& session, NodeType type,
                                                    const std::vector<std::string>& interested = {}) {
    const CalibratedModel& m = session.model();
    const std::set<std::string> wanted(interested.begin(), interested.end());
    std::vector<SensitivityRow> rows;
    std::vector<DebugSession::Experiment> exps;
    if (type == NodeType::node) {
        for (const auto& q : m.nodes()) {
            if (!wanted.empty() && !wanted.count(q.name)) continue;
            SensitivityRow r;
            r.name = q.name;
            r.op_type = q.op_type;
            r.calibrations = q.calibrations;
            rows.push_back(r);
        }
    } else {
        for (std::size_t c = 0; c < m.calibrations().size(); ++c) {
            const auto& cn = m.calibrations()[c];
            if (cn.bias || cn.weight != (type == NodeType::weight)) continue;  // a corrected bias alone means nothing
            if (!wanted.empty() && !wanted.count(cn.name)) continue;
            SensitivityRow r;
            r.name = cn.name;
            r.op_type = cn.weight ? "weight" : "activation";
            r.calibrations = {c};
            rows.push_back(r);
        }
    }
    for (const auto& name : wanted) {
        const bool found = std::any_of(rows.begin(), rows.end(), [&](const SensitivityRow& r) { return r.name == name; });
        BPUQ_CHECK(found, "debug.node",
                   "interested node '" + name + "' is not a " +
                       (type == NodeType::node ? std::string("quantized node") : std::string(node_type_name(type)) + " Calibration node") +
                       " of the model");
    }
    for (const auto& r : rows) {
        auto modes = m.all(CalibMode::float_);
        for (std::size_t c : r.calibrations) modes[c] = CalibMode::quantized;
        DebugSession::Experiment e;
        e.cfg = m.configure(modes);
        if (type == NodeType::node) {
            const auto& q = m.nodes()[std::size_t(m.find_node(r.name))];
            if (session.runner().has_tensor(q.output)) e.watch = {session.runner().slot(q.output)};
        }
        exps.push_back(std::move(e));
    }
    const auto outcomes = session.run(exps);
    const bool avg = session.options().average_mode;
    for (std::size_t i = 0; i < rows.size(); ++i) {
        rows[i].output_samples = outcomes[i].output;
        rows[i].output = detail::summarize(outcomes[i].output, avg);
        if (!outcomes[i].watched.empty()) rows[i].single = detail::summarize(outcomes[i].watched[0], avg);
    }
    detail::sort_worst_first(rows, session.options().metrics[0]);
    return rows;
}

/// The "entire" view: each quantized node's output in the fully quantized graph vs the float
/// graph (the error accumulated up to that node), in topological order.
struct NodeError {
    std::string name;
    std::string op_type;
    std::string tensor;
    ErrorStats error;
};

inline std::vector<NodeError> entire_errors(const DebugSession& session) {
    const auto& fl = session.float_runs();
    const auto& qu = session.quantized_runs();
    std::vector<NodeError> out;
    for (const auto& q : session.model().nodes()) {
        if (!session.runner().has_tensor(q.output)) continue;
        const std::size_t slot = session.runner().slot(q.output);
        ErrorSummary s;
        for (std::size_t i = 0; i < session.samples(); ++i)
            if (comparable(fl[i][slot], qu[i][slot])) s.per_sample.push_back(compare(fl[i][slot], qu[i][slot]));
        if (s.per_sample.empty()) continue;
        out.push_back({q.name, q.op_type, q.output, detail::summarize(s, session.options().average_mode)});
    }
    return out;
}

/// The compared output(s) of the fully quantized model vs float.
inline ErrorStats quantized_model_error(const DebugSession& session) {
    const auto& qu = session.quantized_runs();
    ErrorSummary s;
    for (std::size_t i = 0; i < session.samples(); ++i) {
        std::vector<Tensor> outs;
        for (std::size_t slot : session.compared_slots()) outs.push_back(qu[i][slot]);
        s.per_sample.push_back(session.output_error(i, outs));
    }
    return detail::summarize(s, session.options().average_mode);
}

/// sensitivity_analysis: for each sensitive node, the fully quantized model's output error with
/// that node's inputs raised to int16 (activations and weights, as node_info InputType: int16 does)
/// and with all its inputs left in float (ON: CPU).
struct SensitivityAnalysisRow {
    std::string name;
    std::string op_type;
    double sensitivity = 0;  ///< the node's own sensitivity (output cosine when quantized alone)
    ErrorStats quantized;    ///< everything quantized (the baseline)
    ErrorStats int16;        ///< this node's inputs int16
    ErrorStats float_;       ///< this node's inputs float (ON: CPU)
};

/// Nodes whose output cosine when quantized alone is below `pick_threshold` (or the given
/// `sensitive_nodes`), most sensitive first; when none is below it, the `fallback_top_k` most
/// sensitive nodes. Each experiment re-runs from the cached quantized run.
inline std::vector<SensitivityAnalysisRow> sensitivity_analysis(const DebugSession& session, double pick_threshold = 0.999,
                                                                 std::vector<std::string> sensitive_nodes = {},
                                                                 const std::vector<SensitivityRow>* node_rows = nullptr,
                                                                 std::size_t fallback_top_k = 0) {
    const CalibratedModel& m = session.model();
    std::vector<SensitivityRow> computed;
    if (!node_rows) {
        computed = node_sensitivity(session, NodeType::node);
        node_rows = &computed;
    }
    std::vector<const SensitivityRow*> picked;
    if (sensitive_nodes.empty()) {
        for (const auto& r : *node_rows)
            if (r.output.cosine < pick_threshold) picked.push_back(&r);
        if (picked.empty())
            for (const auto& r : *node_rows) picked.push_back(&r);
        std::sort(picked.begin(), picked.end(), [](const SensitivityRow* a, const SensitivityRow* b) { return a->output.cosine < b->output.cosine; });
        const bool fallback = !picked.empty() && picked.front()->output.cosine >= pick_threshold;
        if (fallback) picked.resize(std::min(picked.size(), fallback_top_k));
    } else {
        for (const auto& name : sensitive_nodes) {
            auto it = std::find_if(node_rows->begin(), node_rows->end(), [&](const SensitivityRow& r) { return r.name == name; });
            BPUQ_CHECK(it != node_rows->end(), "debug.node", "sensitive node '" + name + "' is not a quantized node of the model");
            picked.push_back(&*it);
        }
    }
    const ErrorStats base = quantized_model_error(session);
    std::vector<DebugSession::Experiment> exps;
    for (const SensitivityRow* r : picked)
        for (CalibMode mode : {CalibMode::int16, CalibMode::float_}) {
            auto modes = m.all(CalibMode::quantized);
            // int16 raises the node's inputs, activations and weights, as node_info InputType:
            // int16 does in bpuq_convert; float switches them off (ON: CPU)
            for (std::size_t c : r->calibrations) modes[c] = mode;
            DebugSession::Experiment e;
            e.cfg = m.configure(modes);
            e.from_quantized = true;
            exps.push_back(std::move(e));
        }
    const auto outcomes = session.run(exps);
    const bool avg = session.options().average_mode;
    std::vector<SensitivityAnalysisRow> rows;
    for (std::size_t i = 0; i < picked.size(); ++i) {
        SensitivityAnalysisRow r;
        r.name = picked[i]->name;
        r.op_type = picked[i]->op_type;
        r.sensitivity = picked[i]->output.cosine;
        r.quantized = base;
        r.int16 = detail::summarize(outcomes[2 * i].output, avg);
        r.float_ = detail::summarize(outcomes[2 * i + 1].output, avg);
        rows.push_back(r);
    }
    return rows;
}

}  // namespace debug
BPUQ_NAMESPACE_END
