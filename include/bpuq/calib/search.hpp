// Scoring calibrated graphs against the float model, and the `default` model-wise search
// (SPEC §1.2): {max, kl} x max_percentile {0.99995, 1.0} x per_channel x asymmetric, chosen by
// the mean output cosine similarity on the calibration data.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "../debug/metrics.hpp"
#include "../graph/executor.hpp"
#include "../io/calibration_data.hpp"
#include "collect.hpp"
#include "fake_quant.hpp"
#include "weights.hpp"

BPUQ_NAMESPACE_BEGIN
namespace calib {

/// The float model's outputs on the first `n` calibration samples (computed once, reused by
/// every candidate of a search).
inline std::vector<std::vector<Tensor>> float_outputs(const graph::Executor& exec, const io::CalibrationSet& data,
                                                      std::size_t n, int threads) {
    std::vector<std::vector<Tensor>> out(n);
    for_each_sample(n, threads, [&](int, std::size_t s, const graph::ExecContext& ctx) { out[s] = exec.run(data.load_sample(s), ctx); });
    return out;
}

struct OutputScore {
    std::string name;
    ErrorStats mean;  ///< per-sample metrics averaged over samples (Chebyshev: max)
};

struct ChoiceScore {
    CalibChoice choice;
    std::vector<OutputScore> outputs;
    double cosine = 0.0;  ///< mean over outputs of the mean per-sample cosine
};

/// Compares a (calibrated) graph's outputs with the float reference on the first samples.
inline std::vector<OutputScore> score_graph(const graph::Executor& exec, const io::CalibrationSet& data,
                                            const std::vector<std::vector<Tensor>>& reference, int threads) {
    const std::size_t n = reference.size();
    const std::size_t outs = exec.graph().outputs.size();
    std::vector<std::vector<ErrorStats>> per(n);
    for_each_sample(n, threads, [&](int, std::size_t s, const graph::ExecContext& ctx) {
        const std::vector<Tensor> y = exec.run(data.load_sample(s), ctx);
        for (std::size_t k = 0; k < outs; ++k) per[s].push_back(compare(reference[s][k], y[k]));
    });
    std::vector<OutputScore> result(outs);
    for (std::size_t k = 0; k < outs; ++k) {
        ErrorAccumulator acc;
        for (std::size_t s = 0; s < n; ++s) acc.add(per[s][k]);
        result[k].name = exec.graph().outputs[k];
        result[k].mean = acc.mean();
    }
    return result;
}

inline double mean_cosine(const std::vector<OutputScore>& o) {
    double c = 0;
    for (const auto& s : o) c += s.mean.cosine;
    return o.empty() ? 0.0 : c / static_cast<double>(o.size());
}

/// The candidates of the default search, without duplicates (KL ignores max_percentile).
inline std::vector<CalibChoice> default_search_candidates() {
    std::vector<CalibChoice> c;
    for (bool pc : {false, true})
        for (bool asym : {false, true}) {
            c.push_back({CalibMethod::max, 1.0, pc, asym});
            c.push_back({CalibMethod::max, 0.99995, pc, asym});
            c.push_back({CalibMethod::kl, 1.0, pc, asym});
        }
    return c;
}

struct SearchResult {
    std::size_t best = 0;
    std::vector<ChoiceScore> scores;
};

/// Scores each choice (weights quantized per channel in every candidate; int16 nodes' weights
/// depend on the candidate's input scale) and returns the best
/// by mean output cosine; ties keep the earlier (simpler) candidate.
inline SearchResult search_choices(const graph::Graph& optimized, const QuantPlan& plan, const CalibrationStats& stats,
                                   const io::CalibrationSet& data, const std::vector<std::vector<Tensor>>& reference,
                                   const std::vector<CalibChoice>& choices, int threads,
                                   const std::function<void(const ChoiceScore&)>& on_score = nullptr) {
    SearchResult r;
    for (const auto& choice : choices) {
        const auto acts = choose_qparams(stats, plan, choice);
        const auto weights = quantize_weights(optimized, plan, &acts);  // int16 nodes' weights follow their input scale
        graph::Executor exec(make_calibrated_graph(optimized, plan, acts, weights, choice.describe()));
        ChoiceScore cs;
        cs.choice = choice;
        cs.outputs = score_graph(exec, data, reference, threads);
        cs.cosine = mean_cosine(cs.outputs);
        if (on_score) on_score(cs);
        r.scores.push_back(cs);
        if (cs.cosine > r.scores[r.best].cosine) r.best = r.scores.size() - 1;
    }
    return r;
}

}  // namespace calib
BPUQ_NAMESPACE_END
