// TensorStats: everything one calibration pass records about an activation tensor, so that every
// calibration method (max, percentile, kl, mse; symmetric or asymmetric; per tensor or per channel)
// can be evaluated afterwards without running the model again (the default search needs all of them).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "../core/qparams.hpp"
#include "../core/tensor.hpp"
#include "../observe/histogram.hpp"
#include "../observe/kl.hpp"
#include "../observe/minmax.hpp"
#include "../observe/mse.hpp"
#include "../observe/observer.hpp"
#include "../observe/percentile.hpp"

BPUQ_NAMESPACE_BEGIN
namespace calib {

/// One point of the calibration search space.
struct CalibChoice {
    CalibMethod method = CalibMethod::max;
    double percentile = 1.0;  ///< max_percentile: p < 1 turns max into the p-quantile of |x|
    bool per_channel = false;
    bool asymmetric = false;

    std::string describe() const {
        std::string s = calib_method_name(method);
        if (method == CalibMethod::max && percentile < 1.0) s += " (max_percentile " + std::to_string(percentile) + ")";
        if (per_channel) s += ", per-channel";
        if (asymmetric) s += ", asymmetric";
        return s;
    }
};

struct StatsOptions {
    std::size_t bins = 16384;         ///< per-tensor |x| histogram bin limit (Horizon max_num_bin)
    bool per_channel = false;         ///< also record per-channel statistics (axis 1)
    std::size_t channel_bins = 1024;  ///< per-channel histogram bin limit (memory: channels x this)
    /// KL search: Horizon's 1024-bin search grid, with bin 0 counted like bin 1 (NVIDIA's fix for
    /// the zeros of ReLU outputs, without which KL clips ReLU/ReLU6 activations far too hard —
    /// measured: MobileNet V2 top-1 0% instead of 85%).
    KlOptions kl = [] {
        KlOptions o = KlOptions::horizon();
        o.zero_bin_as_next = true;
        return o;
    }();
};

class TensorStats {
public:
    TensorStats() = default;
    TensorStats(std::string name, const StatsOptions& opt)
        : name_(std::move(name)), opt_(opt), minmax_(false), abs_(opt.bins) {}

    const std::string& name() const { return name_; }
    bool has_channels() const { return !ch_minmax_.empty(); }
    std::size_t channels() const { return ch_minmax_.size(); }
    float min() const { return minmax_.min(); }
    float max() const { return minmax_.max(); }
    const Histogram& histogram() const { return abs_; }

    void observe(const Tensor& t) {
        BPUQ_CHECK(t.dtype() == DType::float32, "calib.dtype", "tensor '" + name_ + "' is " + dtype_name(t.dtype()) +
                                                                   ", calibration observes float32 activations");
        const float* x = t.data<float>();
        const auto n = static_cast<std::size_t>(t.numel());
        if (n == 0) return;
        minmax_.observe(x, n, name_.c_str());
        abs_.add_abs(x, n, name_.c_str());
        if (!opt_.per_channel || t.rank() < 2) return;
        const std::size_t C = static_cast<std::size_t>(t.dim(1));
        std::size_t outer = static_cast<std::size_t>(t.dim(0)), inner = 1;
        for (std::size_t i = 2; i < t.rank(); ++i) inner *= static_cast<std::size_t>(t.dim(i));
        if (ch_minmax_.empty()) {
            ch_minmax_.assign(C, MinMaxObserver(false));
            ch_abs_.assign(C, Histogram(opt_.channel_bins));
        }
        BPUQ_CHECK(ch_minmax_.size() == C, "calib.channels",
                   "tensor '" + name_ + "' changed its channel count between samples");
        for (std::size_t o = 0; o < outer; ++o)
            for (std::size_t c = 0; c < C; ++c) {
                const float* run = x + (o * C + c) * inner;
                ch_minmax_[c].observe(run, inner, name_.c_str());
                ch_abs_[c].add_abs(run, inner, name_.c_str());
            }
    }

    /// Adds statistics of other samples of the same tensor (parallel calibration).
    void merge(const TensorStats& o) {
        if (o.minmax_.empty()) return;
        minmax_.merge(o.minmax_);
        abs_.merge(o.abs_);
        if (o.ch_minmax_.empty()) return;
        if (ch_minmax_.empty()) {
            ch_minmax_ = o.ch_minmax_;
            ch_abs_ = o.ch_abs_;
            return;
        }
        for (std::size_t c = 0; c < ch_minmax_.size(); ++c) {
            ch_minmax_[c].merge(o.ch_minmax_[c]);
            ch_abs_[c].merge(o.ch_abs_[c]);
        }
    }

    /// Threshold T on |x| chosen by the method (per tensor, or for one channel).
    float threshold(const CalibChoice& c, int bits, int channel = -1) const {
        const MinMaxObserver& mm = channel < 0 ? minmax_ : ch_minmax_[static_cast<std::size_t>(channel)];
        const Histogram& h = channel < 0 ? abs_ : ch_abs_[static_cast<std::size_t>(channel)];
        BPUQ_CHECK(!mm.empty(), "calib.empty", "tensor '" + name_ + "' was never observed during calibration");
        switch (c.method) {
            case CalibMethod::max:
                return c.percentile < 1.0 ? percentile_threshold(h, c.percentile) : mm.threshold();
            case CalibMethod::percentile: return percentile_threshold(h, c.percentile);
            case CalibMethod::kl: return kl_threshold(h, bits, opt_.kl);
            case CalibMethod::mse: return mse_threshold(h, bits);
        }
        return mm.threshold();
    }

    /// Quantization parameters for a choice. Asymmetric ranges are [max(min, -T), min(max, T)]:
    /// the method's clipping applied to the observed range (for a ReLU output, [0, T]). Per
    /// channel (when channels were recorded): one threshold per channel, one shared zero point.
    QParams qparams(const CalibChoice& c, int bits) const {
        const bool asym = c.asymmetric && bits == 8;
        auto range = [&](int ch, float& lo, float& hi) {
            const MinMaxObserver& mm = ch < 0 ? minmax_ : ch_minmax_[static_cast<std::size_t>(ch)];
            const float t = threshold(c, bits, ch);
            if (asym) {
                lo = std::max(mm.min(), -t);
                hi = std::min(mm.max(), t);
            } else {
                lo = -t;
                hi = t;
            }
        };
        if (c.per_channel && has_channels()) {
            std::vector<float> lo(channels()), hi(channels());
            for (std::size_t ch = 0; ch < channels(); ++ch) range(static_cast<int>(ch), lo[ch], hi[ch]);
            return qparams_from_ranges_shared_zero_point(lo, hi, 1, bits, !asym);
        }
        float lo = 0, hi = 0;
        range(-1, lo, hi);
        return qparams_from_range(lo, hi, bits, !asym);
    }

private:
    std::string name_;
    StatsOptions opt_;
    MinMaxObserver minmax_{false};
    Histogram abs_;
    std::vector<MinMaxObserver> ch_minmax_;
    std::vector<Histogram> ch_abs_;
};

}  // namespace calib
BPUQ_NAMESPACE_END
