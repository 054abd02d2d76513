// The int16 plan: which nodes to raise to int16, chosen one at a time by how much each raises
// the fully quantized model's output cosine given the nodes already chosen (the entire view,
// re-measured after every choice) — what the accuracy optimizer converts and verifies.
#pragma once

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "sensitivity.hpp"

BPUQ_NAMESPACE_BEGIN
namespace debug {

struct Int16PlanOptions {
    /// Stop once the planned model's output cosine reaches this (1.0 = plan up to max_nodes).
    double target_cosine = 1.0;
    /// Keep planning this many nodes past the target, for when the integer program falls
    /// slightly short of the fake-quant estimate.
    std::size_t extra_nodes = 2;
    std::size_t max_nodes = 8;
    /// After the first round (every candidate measured), only the candidates with the largest
    /// gains stay in the running: each round costs one re-run per remaining candidate.
    std::size_t pool = 32;
};

struct Int16PlanStep {
    std::string node;
    ErrorStats output;  ///< the model output vs float with this node and every earlier one int16
};

struct Int16Plan {
    ErrorStats quantized;  ///< everything as calibrated (the start)
    std::vector<Int16PlanStep> steps;
    /// The first round: every candidate's output cosine when it alone is raised, best first.
    std::vector<std::pair<std::string, double>> first_round;
    /// Steps needed to reach the target (steps.size() + 1 if the plan never reached it).
    std::size_t steps_to_target(double target) const {
        for (std::size_t i = 0; i < steps.size(); ++i)
            if (steps[i].output.cosine >= target) return i + 1;
        return steps.size() + 1;
    }
};

/// Greedy plan over `candidates` (quantized node names; empty = every quantized node): each round
/// raises, on top of the nodes chosen so far, each remaining candidate's inputs (activations and
/// weights) to int16 and keeps the one whose model output cosine is highest. Stops at
/// max_nodes, `extra_nodes` past the target, or when no candidate improves the output.
/// Each experiment re-runs only the graph below the changed node, from the current plan's runs.
inline Int16Plan int16_plan(const DebugSession& session, std::vector<std::string> candidates, const Int16PlanOptions& opt = {}) {
    const CalibratedModel& m = session.model();
    if (candidates.empty())
        for (const auto& q : m.nodes()) candidates.push_back(q.name);
    for (const auto& name : candidates)
        BPUQ_CHECK(m.find_node(name) >= 0, "debug.node", "int16 candidate '" + name + "' is not a quantized node of the model");
    Int16Plan plan;
    plan.quantized = quantized_model_error(session);
    auto modes = m.all(CalibMode::quantized);
    NodeConfig base_cfg = session.quantized_config();
    std::vector<RunValues> base_runs;  // empty: the session's own quantized runs
    double current = plan.quantized.cosine;
    std::size_t past_target = 0;
    const bool avg = session.options().average_mode;
    while (plan.steps.size() < opt.max_nodes && !candidates.empty()) {
        // one experiment per candidate that still changes something
        std::vector<std::string> tried;
        std::vector<DebugSession::Experiment> exps;
        for (const auto& name : candidates) {
            const auto& q = m.nodes()[std::size_t(m.find_node(name))];
            auto mine = modes;
            bool changes = false;
            for (std::size_t c : q.calibrations) {
                changes = changes || mine[c] != CalibMode::int16;
                mine[c] = CalibMode::int16;
            }
            if (!changes) continue;
            DebugSession::Experiment e;
            e.cfg = m.configure(mine);
            if (base_runs.empty()) e.from_quantized = true;
            else {
                e.base_runs = &base_runs;
                e.base_cfg = &base_cfg;
            }
            exps.push_back(std::move(e));
            tried.push_back(name);
        }
        if (exps.empty()) break;
        const auto outcomes = session.run(exps);
        std::vector<std::pair<std::string, ErrorStats>> scored;
        for (std::size_t i = 0; i < tried.size(); ++i) scored.push_back({tried[i], detail::summarize(outcomes[i].output, avg)});
        std::stable_sort(scored.begin(), scored.end(), [](const auto& a, const auto& b) { return a.second.cosine > b.second.cosine; });
        if (plan.first_round.empty())
            for (const auto& s : scored) plan.first_round.push_back({s.first, s.second.cosine});
        if (scored.front().second.cosine <= current) break;  // nothing helps any more
        const std::string chosen = scored.front().first;
        plan.steps.push_back({chosen, scored.front().second});
        current = scored.front().second.cosine;
        // the remaining pool: the best-scoring candidates of this round, without the chosen one
        candidates.clear();
        for (std::size_t i = 1; i < scored.size() && candidates.size() < opt.pool; ++i) candidates.push_back(scored[i].first);
        for (std::size_t c : m.nodes()[std::size_t(m.find_node(chosen))].calibrations) modes[c] = CalibMode::int16;
        if (current >= opt.target_cosine && past_target++ >= opt.extra_nodes) break;
        if (plan.steps.size() < opt.max_nodes) {
            base_cfg = m.configure(modes);
            base_runs = session.runs_from_quantized(base_cfg);
        }
    }
    return plan;
}

}  // namespace debug
BPUQ_NAMESPACE_END
