// calibration_type: mix (SPEC §1.2, the layer-wise search): calibrate with max, max-percentile
// 0.99995 and kl; take the best model-wise; rank the activations by sensitivity (the debug tool);
// for the sensitive ones (cosine below a threshold, or the top k) pick, activation by activation,
// the method whose parameters hurt the output least; report the merge table.
#pragma once

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../calib/search.hpp"
#include "../debug/sensitivity.hpp"

BPUQ_NAMESPACE_BEGIN
namespace flow {

struct MixOptions {
    bool asymmetric = false;
    double threshold = 0.999;   ///< activations whose sensitivity cosine is below this are re-chosen
    std::size_t topk = 0;       ///< > 0: also the k most sensitive activations, whatever their cosine
    std::size_t samples = 10;   ///< calibration samples for the sensitivities
    int threads = 1;
};

/// One row of the merge table: a sensitive activation and its sensitivity under each method.
struct MixRow {
    std::string tensor;
    std::vector<double> cosine;  ///< per candidate, as quantized alone (rest float)
    std::size_t chosen = 0;
};

struct MixResult {
    std::vector<calib::CalibChoice> candidates;
    std::vector<calib::ChoiceScore> model_wise;  ///< output cosine of each candidate as a whole
    std::size_t base = 0;                        ///< the model-wise best
    std::vector<MixRow> rows;
    std::map<std::string, QParams> activations;  ///< the merged parameters (aliases included)
};

/// The parameter key of a Calibration node: the tensor it calibrates (graph inputs are calibrated
/// into "<name>_calibrated"; node outputs keep their name).
inline std::string calibrated_tensor(const debug::CalibrationNode& c, const std::map<std::string, QParams>& acts) {
    return acts.count(c.output) ? c.output : c.input;
}

/// The caller quantizes the weights for the merged activations (int16 nodes' weights follow their
/// input scale: calib::quantize_weights(optimized, plan, &result.activations)).
inline MixResult mix_calibration(const graph::Graph& optimized, const calib::QuantPlan& plan, const calib::CalibrationStats& stats,
                                 const io::CalibrationSet& data, const std::vector<std::vector<Tensor>>& reference,
                                 const MixOptions& opt) {
    MixResult r;
    r.candidates = {{CalibMethod::max, 1.0, false, opt.asymmetric},
                    {CalibMethod::max, 0.99995, false, opt.asymmetric},
                    {CalibMethod::kl, 1.0, false, opt.asymmetric}};
    const calib::SearchResult sr = calib::search_choices(optimized, plan, stats, data, reference, r.candidates, opt.threads);
    r.model_wise = sr.scores;
    r.base = sr.best;

    std::vector<std::map<std::string, QParams>> acts;
    std::vector<std::unique_ptr<debug::CalibratedModel>> models;
    for (const auto& c : r.candidates) {
        acts.push_back(calib::choose_qparams(stats, plan, c));
        const auto weights = calib::quantize_weights(optimized, plan, &acts.back());
        models.push_back(std::make_unique<debug::CalibratedModel>(
            calib::make_calibrated_graph(optimized, plan, acts.back(), weights, c.describe())));
    }
    debug::DebugOptions dopt;
    dopt.data_num = opt.samples;
    dopt.threads = opt.threads;
    r.activations = acts[r.base];

    // sensitive activations under the model-wise best
    const debug::DebugSession base_session(*models[r.base], data, dopt);
    const auto ranked = debug::node_sensitivity(base_session, debug::NodeType::activation);
    std::vector<std::string> sensitive;
    for (std::size_t i = 0; i < ranked.size(); ++i) {
        const auto& c = models[r.base]->calibrations()[ranked[i].calibrations[0]];
        if (plan.tensors.count(calibrated_tensor(c, acts[r.base])) && plan.tensors.at(calibrated_tensor(c, acts[r.base])).fixed) continue;
        if (ranked[i].output.cosine < opt.threshold || i < opt.topk) sensitive.push_back(ranked[i].name);
    }
    if (sensitive.empty()) return r;

    // their sensitivity under every candidate's parameters
    std::vector<std::map<std::string, double>> cos(r.candidates.size());
    for (std::size_t k = 0; k < r.candidates.size(); ++k) {
        const debug::DebugSession s(*models[k], data, dopt);
        for (const auto& row : debug::node_sensitivity(s, debug::NodeType::activation, sensitive)) cos[k][row.name] = row.output.cosine;
    }
    for (const auto& name : sensitive) {
        const auto& c = models[r.base]->calibrations()[std::size_t(models[r.base]->find_calibration(name))];
        MixRow row;
        row.tensor = calibrated_tensor(c, acts[r.base]);
        for (std::size_t k = 0; k < r.candidates.size(); ++k) row.cosine.push_back(cos[k].at(name));
        row.chosen = r.base;
        for (std::size_t k = 0; k < r.candidates.size(); ++k)
            if (row.cosine[k] > row.cosine[row.chosen]) row.chosen = k;
        r.activations[row.tensor] = acts[row.chosen].at(row.tensor);
        r.rows.push_back(row);
    }
    for (const auto& kv : plan.tensors)  // passthrough outputs follow their root
        if (kv.second.quantized && !kv.second.alias_of.empty()) r.activations[kv.first] = r.activations.at(plan.root_of(kv.first));
    return r;
}

}  // namespace flow
BPUQ_NAMESPACE_END
