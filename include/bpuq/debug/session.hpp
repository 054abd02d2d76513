// DebugSession: a calibrated model, its debug data and the cached float and fully-quantized runs
// of every sample, plus the one parallel primitive every debug experiment is built from:
// "run these configurations from this cached baseline and measure these tensors".
#pragma once

#include <algorithm>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../calib/collect.hpp"
#include "../io/calibration_data.hpp"
#include "cached_runner.hpp"
#include "calibrated_model.hpp"
#include "metrics.hpp"

BPUQ_NAMESPACE_BEGIN
namespace debug {

/// The debug data folder (what `debug_mode: dump_calibration_data` writes): one sub-folder per
/// model input named after it; a model with one input also takes a folder of samples directly.
inline io::CalibrationSet open_debug_data(const std::string& dir, const graph::Graph& g) {
    namespace fs = std::filesystem;
    std::error_code ec;
    BPUQ_CHECK(fs::is_directory(dir, ec), "debug.data", "debug data folder '" + dir + "' does not exist or is not a folder");
    std::vector<io::CalibrationInputSpec> specs;
    for (const auto& in : g.inputs) {
        const graph::Value* v = g.find_value(in);
        BPUQ_CHECK(v && v->has_shape, "debug.data", "model input '" + in + "' has no shape");
        Shape s = v->shape;
        for (auto& d : s) d = d < 0 ? 1 : d;
        std::string sub = (fs::path(dir) / in).string();
        if (!fs::is_directory(sub, ec)) {
            BPUQ_CHECK(g.inputs.size() == 1, "debug.data",
                       "debug data folder '" + dir + "' has no sub-folder '" + in + "' for model input '" + in +
                           "' (a model with several inputs needs one sub-folder per input, as dump_calibration_data writes)");
            sub = dir;
        }
        specs.push_back({in, sub, "float32", s});
    }
    return io::CalibrationSet(specs);
}

struct DebugOptions {
    std::vector<Metric> metrics{Metric::cosine_similarity};  ///< the first one ranks
    std::string output_node;   ///< tensor whose error is measured ("" = every model output, averaged)
    std::size_t data_num = 0;  ///< samples used (0 = all in the folder)
    int threads = 0;           ///< 0 = all hardware threads
    /// true: metrics are the mean over samples; false: the worst sample's value (to find outliers).
    bool average_mode = true;
};

/// Per-sample errors of some tensors, reduced to one number per metric.
struct ErrorSummary {
    std::vector<ErrorStats> per_sample;  ///< one entry per sample (several tensors already averaged)

    /// Mean over samples, or the worst sample when `average` is false. Chebyshev is always the max.
    double value(Metric m, bool average = true) const {
        if (per_sample.empty()) return metric_higher_is_better(m) ? 1.0 : 0.0;
        double acc = average ? 0.0 : per_sample[0].get(m);
        for (const auto& s : per_sample) {
            const double v = s.get(m);
            if (m == Metric::chebyshev) acc = std::max(acc, v);
            else if (average) acc += v;
            else acc = metric_higher_is_better(m) ? std::min(acc, v) : std::max(acc, v);
        }
        return (average && m != Metric::chebyshev) ? acc / double(per_sample.size()) : acc;
    }
};

/// The mean of several tensors' stats (Chebyshev: the max) — a model with several outputs.
inline ErrorStats average_stats(const std::vector<ErrorStats>& v) {
    ErrorAccumulator acc;
    for (const auto& s : v) acc.add(s);
    return acc.mean();
}

/// Compares two tensors as floats; tensors that are not float32 or differ in shape are skipped
/// by the caller (has_comparable).
inline bool comparable(const Tensor& a, const Tensor& b) {
    return !a.empty() && !b.empty() && a.dtype() == DType::float32 && b.dtype() == DType::float32 && a.shape() == b.shape();
}

class DebugSession {
public:
    DebugSession(const CalibratedModel& model, const io::CalibrationSet& data, DebugOptions opt = {})
        : model_(model), data_(data), opt_(std::move(opt)), runner_(model.graph()) {
        BPUQ_CHECK(!opt_.metrics.empty(), "debug.metric", "at least one metric is needed");
        BPUQ_CHECK(data.input_count() == model.graph().inputs.size(), "debug.data",
                   "the debug data has " + std::to_string(data.input_count()) + " input folder(s), the model has " +
                       std::to_string(model.graph().inputs.size()) + " input(s)");
        samples_ = opt_.data_num ? std::min(opt_.data_num, data.size()) : data.size();
        BPUQ_CHECK(samples_ > 0, "debug.data", "the debug data folder holds no samples");
        threads_ = opt_.threads > 0 ? opt_.threads : std::max(1, int(std::thread::hardware_concurrency()));
        if (opt_.output_node.empty()) {
            compared_ = runner_.output_slots();
            compared_names_ = model.graph().outputs;
        } else {
            compared_ = {runner_.slot(opt_.output_node)};
            compared_names_ = {opt_.output_node};
        }
        float_cfg_ = model.configure(model.all(CalibMode::float_));
        quant_cfg_ = model.configure(model.all(CalibMode::quantized));
    }

    const CalibratedModel& model() const { return model_; }
    const CachedRunner& runner() const { return runner_; }
    const DebugOptions& options() const { return opt_; }
    std::size_t samples() const { return samples_; }
    int threads() const { return threads_; }
    const std::vector<std::string>& compared_names() const { return compared_names_; }
    const std::vector<std::size_t>& compared_slots() const { return compared_; }
    const NodeConfig& float_config() const { return float_cfg_; }
    const NodeConfig& quantized_config() const { return quant_cfg_; }

    /// Every value of the float run of each sample (computed once, in parallel).
    const std::vector<RunValues>& float_runs() const {
        std::call_once(float_once_, [&] { float_ = run_everything(float_cfg_); });
        return float_;
    }
    /// Every value of the fully quantized (calibrated) run of each sample.
    const std::vector<RunValues>& quantized_runs() const {
        std::call_once(quant_once_, [&] { quant_ = run_everything(quant_cfg_); });
        return quant_;
    }

    /// Errors of the compared outputs (averaged over them) between the float run and `values`.
    ErrorStats output_error(std::size_t sample, const std::vector<Tensor>& outputs) const {
        std::vector<ErrorStats> e;
        for (std::size_t k = 0; k < compared_.size(); ++k) {
            const Tensor& ref = float_runs()[sample][compared_[k]];
            if (comparable(ref, outputs[k])) e.push_back(compare(ref, outputs[k]));
        }
        BPUQ_CHECK(!e.empty(), "debug.output", "the compared output(s) are not float tensors");
        return average_stats(e);
    }

    /// One experiment: `cfg` run from the float (or quantized, or a given) baseline of every sample.
    struct Experiment {
        NodeConfig cfg;
        bool from_quantized = false;
        std::vector<std::size_t> watch;  ///< extra slots compared with the float run
        /// A baseline of the caller's (runs_from_quantized()): re-run from these values, which
        /// were computed under base_cfg. Takes precedence over from_quantized.
        const std::vector<RunValues>* base_runs = nullptr;
        const NodeConfig* base_cfg = nullptr;
    };
    struct Outcome {
        ErrorSummary output;               ///< the compared outputs
        std::vector<ErrorSummary> watched;  ///< one per Experiment::watch slot
    };

    /// Every value of each sample's run under `cfg`, re-run from the fully quantized run: a
    /// baseline for experiments that change a configuration step by step (Experiment::base_runs).
    std::vector<RunValues> runs_from_quantized(const NodeConfig& cfg) const {
        const auto& qu = quantized_runs();
        std::vector<RunValues> r(samples_);
        calib::for_each_sample(samples_, threads_, [&](int, std::size_t s, const graph::ExecContext& ctx) {
            r[s] = runner_.rerun_all(qu[s], quant_cfg_, cfg, ctx);
        });
        return r;
    }

    /// Errors of the compared outputs of some runs (e.g. runs_from_quantized()) against float.
    ErrorSummary output_errors(const std::vector<RunValues>& runs) const {
        ErrorSummary e;
        for (std::size_t s = 0; s < samples_; ++s) {
            std::vector<Tensor> outs;
            for (std::size_t slot : compared_) outs.push_back(runs[s][slot]);
            e.per_sample.push_back(output_error(s, outs));
        }
        return e;
    }

    /// Runs every experiment on every sample, in parallel over (experiment, sample) pairs.
    std::vector<Outcome> run(const std::vector<Experiment>& exps) const {
        const auto& fl = float_runs();
        if (std::any_of(exps.begin(), exps.end(), [](const Experiment& e) { return e.from_quantized; })) quantized_runs();
        std::vector<Outcome> out(exps.size());
        for (std::size_t e = 0; e < exps.size(); ++e) {
            out[e].output.per_sample.resize(samples_);
            out[e].watched.assign(exps[e].watch.size(), ErrorSummary{});
            for (auto& w : out[e].watched) w.per_sample.resize(samples_);
        }
        calib::for_each_sample(exps.size() * samples_, threads_, [&](int, std::size_t task, const graph::ExecContext& ctx) {
            const std::size_t e = task / samples_, s = task % samples_;
            const Experiment& x = exps[e];
            std::vector<std::size_t> wanted = compared_;
            wanted.insert(wanted.end(), x.watch.begin(), x.watch.end());
            const RunValues& base = x.base_runs ? (*x.base_runs)[s] : x.from_quantized ? quant_[s] : fl[s];
            const NodeConfig& base_cfg = x.base_runs ? *x.base_cfg : x.from_quantized ? quant_cfg_ : float_cfg_;
            const std::vector<Tensor> v = runner_.rerun(base, base_cfg, x.cfg, wanted, ctx);
            out[e].output.per_sample[s] = output_error(s, std::vector<Tensor>(v.begin(), v.begin() + std::ptrdiff_t(compared_.size())));
            for (std::size_t k = 0; k < x.watch.size(); ++k) {
                const Tensor& ref = fl[s][x.watch[k]];
                const Tensor& got = v[compared_.size() + k];
                out[e].watched[k].per_sample[s] = comparable(ref, got) ? compare(ref, got) : ErrorStats{};
            }
        });
        return out;
    }

private:
    std::vector<RunValues> run_everything(const NodeConfig& cfg) const {
        std::vector<RunValues> r(samples_);
        calib::for_each_sample(samples_, threads_, [&](int, std::size_t s, const graph::ExecContext& ctx) {
            r[s] = runner_.run_all(data_.load_sample(s), cfg, ctx);
        });
        return r;
    }

    const CalibratedModel& model_;
    const io::CalibrationSet& data_;
    DebugOptions opt_;
    CachedRunner runner_;
    std::size_t samples_ = 0;
    int threads_ = 1;
    std::vector<std::size_t> compared_;
    std::vector<std::string> compared_names_;
    NodeConfig float_cfg_, quant_cfg_;
    mutable std::once_flag float_once_, quant_once_;
    mutable std::vector<RunValues> float_, quant_;
};

}  // namespace debug
BPUQ_NAMESPACE_END
