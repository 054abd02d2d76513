// Observer: the untemplated, runtime-configured calibration observer (method, bits, symmetry,
// per-tensor or per-channel) that the calibration driver holds per tensor.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/qparams.hpp"
#include "../core/tensor.hpp"
#include "detail/scan.hpp"
#include "histogram.hpp"
#include "kl.hpp"
#include "minmax.hpp"
#include "mse.hpp"
#include "percentile.hpp"

BPUQ_NAMESPACE_BEGIN

/// Calibration methods (SPEC.md §1.2); `max` with percentile < 1 is `percentile`.
enum class CalibMethod { max, percentile, kl, mse };

inline const char* calib_method_name(CalibMethod m) noexcept {
    switch (m) {
        case CalibMethod::max: return "max";
        case CalibMethod::percentile: return "percentile";
        case CalibMethod::kl: return "kl";
        case CalibMethod::mse: return "mse";
    }
    return "unknown";
}

inline CalibMethod parse_calib_method(const std::string& s) {
    if (s == "max") return CalibMethod::max;
    if (s == "percentile") return CalibMethod::percentile;
    if (s == "kl") return CalibMethod::kl;
    if (s == "mse") return CalibMethod::mse;
    BPUQ_THROW("observe.method", "calibration method '" + s + "' is unknown; allowed: max, percentile, kl, mse");
}

/// Everything an Observer needs to know, as runtime data.
struct ObserverConfig {
    CalibMethod method = CalibMethod::max;
    int bits = 8;                ///< 8 or 16 (L = 2^(bits-1) levels in the threshold searches)
    bool symmetric = true;       ///< threshold on |x|, or an asymmetric [min, max] (max, percentile)
    int channel_axis = -1;       ///< -1: per tensor; else one range per index of this axis
    bool ema = false;            ///< max only: moving average of the batch ranges
    double ema_c = 0.01;         ///< moving-average constant
    double percentile = 0.99995; ///< percentile method: the kept fraction p in (0, 1]
    std::size_t histogram_bins = 16384;  ///< bin limit of a per-tensor histogram (Horizon max_num_bin)
    /// Bin limit of each channel's histogram when per channel: memory is channels x bins x 8
    /// bytes (512 channels x 2048 bins = 8 MB), so the default is lower than per tensor.
    std::size_t channel_histogram_bins = 2048;
    KlOptions kl{};              ///< KL search grid and threshold placement
    std::string name = "observer";  ///< names the tensor in error messages
};

/// Per-tensor or per-channel observer with a runtime method. It streams: state is one
/// min/max per channel plus, for the histogram methods, one Histogram per channel (two for
/// the asymmetric percentile), whatever the number of batches.
class Observer {
public:
    explicit Observer(ObserverConfig cfg) : cfg_(std::move(cfg)) {
        const std::string& n = cfg_.name;
        BPUQ_CHECK(cfg_.bits == 8 || cfg_.bits == 16, "observe.config",
                   n + ": bit width " + std::to_string(cfg_.bits) + " is not supported; use 8 or 16");
        BPUQ_CHECK(cfg_.symmetric || cfg_.bits == 8, "observe.config",
                   n + ": 16-bit tensors are symmetric on the BPU; asymmetric needs bits = 8");
        BPUQ_CHECK(cfg_.symmetric || cfg_.method == CalibMethod::max || cfg_.method == CalibMethod::percentile,
                   "observe.config",
                   n + ": method " + calib_method_name(cfg_.method) +
                       " searches a threshold of |x| and is symmetric only; asymmetric supports max and percentile");
        BPUQ_CHECK(!cfg_.ema || cfg_.method == CalibMethod::max, "observe.config",
                   n + ": the moving average applies to the max method only, not " + calib_method_name(cfg_.method));
        BPUQ_CHECK(cfg_.channel_axis >= -1, "observe.axis",
                   n + ": channel axis " + std::to_string(cfg_.channel_axis) + " must be -1 (per tensor) or >= 0");
        BPUQ_CHECK(cfg_.percentile > 0.0 && cfg_.percentile <= 1.0, "observe.percentile",
                   n + ": percentile " + std::to_string(cfg_.percentile) + " must be in (0, 1]");
        for (std::size_t b : {cfg_.histogram_bins, cfg_.channel_histogram_bins})
            BPUQ_CHECK(b >= 2 && b <= Histogram::kMaxBinsLimit, "observe.bins",
                       n + ": histogram bin count " + std::to_string(b) + " is outside [2, 16777216]");
        (void)MinMaxObserver(cfg_.ema, cfg_.ema_c);  // validates ema_c
        if (cfg_.channel_axis < 0) allocate(1);
    }

    // ---- observing ------------------------------------------------------------------
    /// One batch of a per-tensor observer (any layout).
    void observe(const float* x, std::size_t n) {
        BPUQ_CHECK(cfg_.channel_axis < 0, "observe.axis",
                   cfg_.name + ": a per-channel observer needs the tensor shape, not a flat span");
        observe(x, Shape{static_cast<std::int64_t>(n)});
    }

    /// One batch: a dense C-order float tensor of `shape`; per channel the channel axis of
    /// the config selects the channel and every other axis is reduced.
    void observe(const float* x, const Shape& shape) {
        const std::int64_t total = shape_numel(shape);
        std::size_t outer = 1, inner = static_cast<std::size_t>(total), channels = 1;
        if (cfg_.channel_axis >= 0) {
            const auto axis = static_cast<std::size_t>(cfg_.channel_axis);
            BPUQ_CHECK(axis < shape.size(), "observe.axis",
                       cfg_.name + ": channel axis " + std::to_string(axis) + " is out of range for shape " +
                           shape_to_string(shape));
            channels = static_cast<std::size_t>(shape[axis]);
            BPUQ_CHECK(channels > 0, "observe.channels", cfg_.name + ": shape " + shape_to_string(shape) +
                                                              " has no channels on axis " + std::to_string(axis));
            if (minmax_.empty()) allocate(channels);
            BPUQ_CHECK(channels == minmax_.size(), "observe.channels",
                       cfg_.name + ": batch of shape " + shape_to_string(shape) + " has " + std::to_string(channels) +
                           " channels on axis " + std::to_string(axis) + ", earlier batches had " +
                           std::to_string(minmax_.size()));
            outer = 1;
            for (std::size_t i = 0; i < axis; ++i) outer *= static_cast<std::size_t>(shape[i]);
            inner = 1;
            for (std::size_t i = axis + 1; i < shape.size(); ++i) inner *= static_cast<std::size_t>(shape[i]);
        }
        if (total == 0) return;

        // Pass 1: per-channel batch statistics (and the finiteness check) over every run.
        stats_.assign(channels, detail::BatchStats{});
        for (std::size_t o = 0; o < outer; ++o)
            for (std::size_t c = 0; c < channels; ++c) detail::scan_span(x + (o * channels + c) * inner, inner, stats_[c]);
        for (std::size_t c = 0; c < channels; ++c)
            if (!stats_[c].finite()) {
                const std::string who = cfg_.channel_axis >= 0 ? cfg_.name + " (channel " + std::to_string(c) + ")"
                                                               : cfg_.name;
                detail::throw_nonfinite(who, detail::count_nonfinite(x, static_cast<std::size_t>(total)),
                                        static_cast<std::uint64_t>(total));
            }
        for (std::size_t c = 0; c < channels; ++c) minmax_[c].observe_batch_range(stats_[c].min(), stats_[c].max());
        if (!uses_histogram()) return;

        // Pass 2: grow each channel's grid once for the whole batch, then bin every run.
        for (std::size_t c = 0; c < channels; ++c) {
            if (signed_histograms()) {
                neg_[c].reserve_range(stats_[c].min() < 0.0f ? -stats_[c].min() : 0.0f);
                hist_[c].reserve_range(stats_[c].max() > 0.0f ? stats_[c].max() : 0.0f);
            } else {
                hist_[c].reserve_range(stats_[c].absmax());
            }
        }
        for (std::size_t o = 0; o < outer; ++o)
            for (std::size_t c = 0; c < channels; ++c) {
                const float* run = x + (o * channels + c) * inner;
                if (signed_histograms())
                    add_signed_in_range(neg_[c], hist_[c], run, inner);
                else
                    hist_[c].add_abs_in_range(run, inner);
            }
    }

    /// One batch from a float32 Tensor.
    void observe(const Tensor& t) {
        BPUQ_CHECK(t.dtype() == DType::float32, "observe.dtype",
                   cfg_.name + ": observers take float32 tensors, got " + dtype_name(t.dtype()));
        observe(t.data<float>(), t.shape());
    }

    /// Adds the state of an observer with the same config that saw later batches (or other
    /// samples, for parallel calibration). Equal to having observed both streams here
    /// (bitwise for the histograms and plain min/max; see MinMaxObserver for the EMA).
    void merge(const Observer& later) {
        BPUQ_CHECK(later.cfg_.method == cfg_.method && later.cfg_.bits == cfg_.bits &&
                       later.cfg_.symmetric == cfg_.symmetric && later.cfg_.channel_axis == cfg_.channel_axis &&
                       later.bins() == bins() && later.cfg_.ema == cfg_.ema,
                   "observe.merge", cfg_.name + ": cannot merge with observer '" + later.cfg_.name +
                                        "' whose method, bits, symmetry, axis or bin limit differ");
        if (later.minmax_.empty()) return;
        if (minmax_.empty()) allocate(later.minmax_.size());
        BPUQ_CHECK(later.minmax_.size() == minmax_.size(), "observe.merge",
                   cfg_.name + ": cannot merge " + std::to_string(later.minmax_.size()) + " channels into " +
                       std::to_string(minmax_.size()));
        for (std::size_t c = 0; c < minmax_.size(); ++c) {
            minmax_[c].merge(later.minmax_[c]);
            if (uses_histogram()) hist_[c].merge(later.hist_[c]);
            if (signed_histograms()) neg_[c].merge(later.neg_[c]);
        }
    }

    // ---- results --------------------------------------------------------------------
    const ObserverConfig& config() const noexcept { return cfg_; }
    bool per_channel() const noexcept { return cfg_.channel_axis >= 0; }
    /// Channels (1 per tensor; 0 for a per-channel observer before its first batch).
    std::size_t channels() const noexcept { return minmax_.size(); }
    bool empty() const noexcept {
        for (const auto& m : minmax_)
            if (!m.empty()) return false;
        return true;
    }
    const MinMaxObserver& minmax(std::size_t channel = 0) const { return minmax_.at(channel); }
    /// Histogram of |x| (symmetric) or of x >= 0 (asymmetric percentile).
    const Histogram& histogram(std::size_t channel = 0) const { return hist_.at(channel); }
    /// Histogram of -x for x < 0 (asymmetric percentile only).
    const Histogram& negative_histogram(std::size_t channel = 0) const { return neg_.at(channel); }

    /// Symmetric threshold of one channel by the configured method.
    float threshold(std::size_t channel = 0) const {
        check_ready(channel);
        switch (cfg_.method) {
            case CalibMethod::max: return minmax_[channel].threshold();
            case CalibMethod::percentile:
                if (signed_histograms()) {
                    float lo = 0.0f, hi = 0.0f;
                    percentile_range(neg_[channel], hist_[channel], cfg_.percentile, lo, hi);
                    return std::max(-lo, hi);
                }
                return percentile_threshold(hist_[channel], cfg_.percentile);
            case CalibMethod::kl: return kl_threshold(hist_[channel], cfg_.bits, cfg_.kl);
            case CalibMethod::mse: return mse_threshold(hist_[channel], cfg_.bits);
        }
        return 0.0f;
    }
    std::vector<float> thresholds() const {
        std::vector<float> t(channels());
        for (std::size_t c = 0; c < t.size(); ++c) t[c] = threshold(c);
        return t;
    }

    /// [min, max] of one channel: [-T, T] when symmetric.
    void range(std::size_t channel, float& rmin, float& rmax) const {
        if (cfg_.symmetric) {
            rmax = threshold(channel);
            rmin = -rmax;
            return;
        }
        check_ready(channel);
        if (cfg_.method == CalibMethod::percentile) {
            percentile_range(neg_[channel], hist_[channel], cfg_.percentile, rmin, rmax);
        } else {
            rmin = minmax_[channel].min();
            rmax = minmax_[channel].max();
        }
    }

    /// Quantization parameters (per channel along channel_axis, or per tensor).
    QParams qparams() const {
        if (!per_channel()) {
            float lo = 0.0f, hi = 0.0f;
            range(0, lo, hi);
            return cfg_.symmetric ? qparams_from_threshold(hi, cfg_.bits) : qparams_from_range(lo, hi, cfg_.bits, false);
        }
        check_ready(0);
        std::vector<float> lo(channels()), hi(channels());
        for (std::size_t c = 0; c < channels(); ++c) range(c, lo[c], hi[c]);
        return qparams_from_ranges(lo, hi, cfg_.channel_axis, cfg_.bits, cfg_.symmetric);
    }

private:
    bool uses_histogram() const noexcept { return cfg_.method != CalibMethod::max; }
    bool signed_histograms() const noexcept { return !cfg_.symmetric && cfg_.method == CalibMethod::percentile; }

    std::size_t bins() const noexcept { return per_channel() ? cfg_.channel_histogram_bins : cfg_.histogram_bins; }

    void allocate(std::size_t channels) {
        minmax_.assign(channels, MinMaxObserver(cfg_.ema, cfg_.ema_c));
        if (uses_histogram()) hist_.assign(channels, Histogram(bins()));
        if (signed_histograms()) neg_.assign(channels, Histogram(bins()));
    }

    void check_ready(std::size_t channel) const {
        BPUQ_CHECK(channel < minmax_.size() && !minmax_[channel].empty(), "observe.empty",
                   cfg_.name + ": no data observed" +
                       (per_channel() ? " for channel " + std::to_string(channel) : std::string()) +
                       "; run calibration batches before asking for a range");
    }

    ObserverConfig cfg_;
    std::vector<MinMaxObserver> minmax_;
    std::vector<Histogram> hist_;
    std::vector<Histogram> neg_;
    std::vector<detail::BatchStats> stats_;  // per-batch scratch, reused
};

BPUQ_NAMESPACE_END
