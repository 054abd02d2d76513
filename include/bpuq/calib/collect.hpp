// The calibration pass: run the float graph over the calibration set and stream every planned
// activation into its TensorStats. Samples are split over threads, each with its own statistics,
// merged at the end (the histograms merge exactly, so the result does not depend on the split).
#pragma once

#include <chrono>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../graph/context.hpp"
#include "../graph/executor.hpp"
#include "../io/calibration_data.hpp"
#include "quant_plan.hpp"
#include "tensor_stats.hpp"

BPUQ_NAMESPACE_BEGIN
namespace calib {

struct CollectOptions {
    StatsOptions stats;
    int threads = 1;           ///< samples run in parallel, one single-threaded executor run each
    std::size_t max_samples = 0;  ///< 0 = all
    /// Called after each finished sample with (done, total) — for progress output.
    std::function<void(std::size_t, std::size_t)> progress;
};

/// Runs fn(worker, sample, ctx) for samples [0, n) spread over `threads` threads, each with its
/// own single-threaded context (samples in parallel beat threads inside small layers). The
/// first error of any worker is rethrown after all joined.
inline void for_each_sample(std::size_t n, int threads,
                            const std::function<void(int, std::size_t, const graph::ExecContext&)>& fn) {
    threads = std::max(1, std::min<int>(threads, static_cast<int>(n)));
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(threads));
    auto worker = [&](int w) {
        graph::ExecContext ctx(1);
        try {
            for (std::size_t s = static_cast<std::size_t>(w); s < n; s += static_cast<std::size_t>(threads)) fn(w, s, ctx);
        } catch (...) {
            errors[static_cast<std::size_t>(w)] = std::current_exception();
        }
    };
    std::vector<std::thread> pool;
    for (int w = 1; w < threads; ++w) pool.emplace_back(worker, w);
    worker(0);
    for (auto& t : pool) t.join();
    for (const auto& e : errors)
        if (e) std::rethrow_exception(e);
}

struct CalibrationStats {
    std::map<std::string, TensorStats> tensors;
    std::size_t samples = 0;
};

/// Observes the planned tensors (plan.calibrated) over the calibration set.
inline CalibrationStats collect_statistics(const graph::Executor& exec, const io::CalibrationSet& data, const QuantPlan& plan,
                                           const CollectOptions& opt = {}) {
    const std::size_t total = opt.max_samples ? std::min(opt.max_samples, data.size()) : data.size();
    BPUQ_CHECK(total > 0, "calib.empty", "the calibration set has no samples");
    BPUQ_CHECK(data.input_count() == exec.graph().inputs.size(), "calib.inputs",
               "the calibration set has " + std::to_string(data.input_count()) + " input folder(s), the model has " +
                   std::to_string(exec.graph().inputs.size()) + " input(s)");
    const int threads = std::max(1, std::min<int>(opt.threads, static_cast<int>(total)));

    std::vector<CalibrationStats> partial(static_cast<std::size_t>(threads));
    for (auto& p : partial)
        for (const auto& t : plan.calibrated) {
            StatsOptions so = opt.stats;  // channels only where the plan allows per-channel parameters
            so.per_channel = so.per_channel && plan.tensors.at(t).channel_ok;
            p.tensors.emplace(t, TensorStats(t, so));
        }
    std::mutex progress_mu;
    std::size_t done = 0;
    for_each_sample(total, threads, [&](int w, std::size_t s, const graph::ExecContext& ctx) {
        CalibrationStats& mine = partial[static_cast<std::size_t>(w)];
        const std::vector<Tensor> inputs = data.load_sample(s);
        for (std::size_t i = 0; i < inputs.size(); ++i) {
            auto it = mine.tensors.find(exec.graph().inputs[i]);
            if (it != mine.tensors.end()) it->second.observe(inputs[i]);
        }
        exec.run(inputs, ctx, [&](const graph::Node& n, const std::vector<Tensor>& outs) {
            for (std::size_t k = 0; k < outs.size() && k < n.outputs.size(); ++k) {
                auto it = mine.tensors.find(n.outputs[k]);
                if (it != mine.tensors.end()) it->second.observe(outs[k]);
            }
        });
        ++mine.samples;
        std::lock_guard<std::mutex> lock(progress_mu);
        ++done;
        if (opt.progress) opt.progress(done, total);
    });
    CalibrationStats result = std::move(partial[0]);
    for (std::size_t w = 1; w < partial.size(); ++w) {
        for (auto& kv : partial[w].tensors) result.tensors.at(kv.first).merge(kv.second);
        result.samples += partial[w].samples;
    }
    return result;
}

/// Parameters for every planned tensor under one calibration choice (aliases included).
inline std::map<std::string, QParams> choose_qparams(const CalibrationStats& stats, const QuantPlan& plan,
                                                     const CalibChoice& choice) {
    std::map<std::string, QParams> out;
    for (const auto& t : plan.calibrated) {
        const int bits = plan.tensors.at(t).bits;
        if (plan.tensors.at(t).fixed) {
            out[t] = plan.tensors.at(t).fixed_params;
            continue;
        }
        CalibChoice c = choice;
        if (bits == 16) c.asymmetric = false;  // int16 tensors are symmetric
        c.per_channel = c.per_channel && plan.tensors.at(t).channel_ok;
        out[t] = stats.tensors.at(t).qparams(c, bits);
    }
    // aliases take their source's parameters (sources outside plan.calibrated are the caller's)
    for (const auto& kv : plan.tensors) {
        if (!kv.second.quantized || kv.second.alias_of.empty()) continue;
        auto root = out.find(plan.root_of(kv.first));
        if (root != out.end()) out[kv.first] = root->second;
    }
    return out;
}

}  // namespace calib
BPUQ_NAMESPACE_END
