// MinMaxObserver: running [min, max] of a stream of batches, optionally as a moving average.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/qparams.hpp"
#include "detail/scan.hpp"

BPUQ_NAMESPACE_BEGIN

/// Running minimum and maximum (ALGORITHMS.md §2).
///
/// Plain mode: min = min over all values, max likewise (order-independent, exact).
/// EMA mode (moving average over batches, c = ema_c, default 0.01):
///   first batch: min = min_b;  later batches: min += c (min_b - min)   (max likewise)
/// EMA depends on batch order; merge(a, b) reproduces "a's batches, then b's" exactly in
/// real arithmetic: after b's n_b batches the part of the state that came from before b's
/// first batch decays by (1-c)^n_b, so  min = min_b_alone + (1-c)^n_b (min_a - first_min_b).
class MinMaxObserver {
public:
    MinMaxObserver() = default;
    explicit MinMaxObserver(bool ema, double ema_c = 0.01) : ema_(ema), c_(ema_c) {
        BPUQ_CHECK(!ema || (ema_c > 0.0 && ema_c <= 1.0), "observe.ema",
                   "moving-average constant " + std::to_string(ema_c) + " must be in (0, 1]");
    }

    /// Observes one batch x[0..n). An empty batch changes nothing; NaN/Inf is an error.
    void observe(const float* x, std::size_t n, const char* who = "minmax observer") {
        if (n == 0) return;
        detail::BatchStats s;
        detail::scan_span(x, n, s);
        if (!s.finite()) detail::throw_nonfinite(who, detail::count_nonfinite(x, n), n);
        observe_batch_range(s.min(), s.max());
    }

    /// Observes one batch whose range is already known (per-channel drivers compute it).
    void observe_batch_range(float batch_min, float batch_max) {
        BPUQ_CHECK(std::isfinite(batch_min) && std::isfinite(batch_max) && batch_min <= batch_max,
                   "observe.range",
                   "batch range [" + std::to_string(batch_min) + ", " + std::to_string(batch_max) +
                       "] must be finite and ordered");
        if (batches_ == 0) {
            min_ = first_min_ = batch_min;
            max_ = first_max_ = batch_max;
        } else if (ema_) {
            min_ += c_ * (static_cast<double>(batch_min) - min_);
            max_ += c_ * (static_cast<double>(batch_max) - max_);
        } else {
            min_ = std::min(min_, static_cast<double>(batch_min));
            max_ = std::max(max_, static_cast<double>(batch_max));
        }
        ++batches_;
    }

    /// Combines with an observer that saw later batches (see the class comment for EMA).
    void merge(const MinMaxObserver& later) {
        BPUQ_CHECK(ema_ == later.ema_ && c_ == later.c_, "observe.merge",
                   "cannot merge min/max observers with different moving-average settings");
        if (later.batches_ == 0) return;
        if (batches_ == 0) {
            *this = later;
            return;
        }
        if (ema_) {
            const double decay = std::pow(1.0 - c_, static_cast<double>(later.batches_));
            min_ = later.min_ + decay * (min_ - later.first_min_);
            max_ = later.max_ + decay * (max_ - later.first_max_);
        } else {
            min_ = std::min(min_, later.min_);
            max_ = std::max(max_, later.max_);
        }
        batches_ += later.batches_;
    }

    bool empty() const noexcept { return batches_ == 0; }
    std::uint64_t batches() const noexcept { return batches_; }
    bool ema() const noexcept { return ema_; }
    double ema_constant() const noexcept { return c_; }
    /// Range seen so far; [0, 0] before any batch.
    float min() const noexcept { return static_cast<float>(min_); }
    float max() const noexcept { return static_cast<float>(max_); }
    /// Symmetric threshold max(|min|, |max|).
    float threshold() const noexcept { return std::max(std::fabs(min()), std::fabs(max())); }

    QParams qparams(int bits = 8, bool symmetric = true) const {
        return symmetric ? qparams_from_threshold(threshold(), bits) : qparams_from_range(min(), max(), bits, false);
    }

private:
    bool ema_ = false;
    double c_ = 0.01;
    std::uint64_t batches_ = 0;
    double min_ = 0.0, max_ = 0.0;              // the state (double: EMA accumulates)
    double first_min_ = 0.0, first_max_ = 0.0;  // first batch's range, for merging EMA
};

BPUQ_NAMESPACE_END
