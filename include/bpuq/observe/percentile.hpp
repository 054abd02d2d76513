// Percentile threshold from a histogram of |x| (max_percentile; p = 1 gives the maximum).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "histogram.hpp"

BPUQ_NAMESPACE_BEGIN

namespace detail {
/// Rank (1-based, among `total` sorted values) of the p-quantile: k = ceil(p * total),
/// at least 1. A relative slack of 1e-12 keeps p * total = 999950.0000000001 from rounding
/// up to the next rank.
inline std::uint64_t percentile_rank(double p, std::uint64_t total) noexcept {
    const double t = p * static_cast<double>(total);
    auto k = static_cast<std::uint64_t>(std::ceil(t - 1e-12 * t));
    return std::min<std::uint64_t>(std::max<std::uint64_t>(k, 1), total);
}

/// Upper bound of the k-th smallest (1-based) |x| of a histogram: min(upper edge of the bin
/// where the cumulative count reaches k, max |x|). 0 for an empty histogram or k = 0.
inline float rank_upper_bound(const Histogram& h, std::uint64_t k) noexcept {
    if (h.empty() || k == 0) return 0.0f;
    std::uint64_t cum = 0;
    for (std::size_t j = 0; j < h.bins(); ++j) {
        cum += h.count(j);
        if (cum >= k) return std::min(static_cast<float>(h.bin_upper(j)), h.absmax());
    }
    return h.absmax();
}
}  // namespace detail

/// Threshold T such that at least a fraction p of the observed |x| are <= T:
///   k = ceil(p N);  j = first bin with cumulative count >= k;  T = min(upper edge of j, max |x|)
/// The k-th smallest |x| lies in bin j, so it is <= T < it + bin_width. p = 1 returns max |x|
/// exactly. An empty histogram gives 0.
inline float percentile_threshold(const Histogram& h, double p) {
    BPUQ_CHECK(p > 0.0 && p <= 1.0, "observe.percentile",
               "percentile " + std::to_string(p) + " must be in (0, 1] (e.g. 0.99995; 1 means the maximum)");
    if (h.empty()) return 0.0f;
    return detail::rank_upper_bound(h, detail::percentile_rank(p, h.total()));
}

/// Signed percentile range of data split into a histogram of the negative values' |x| and
/// one of the non-negative values (add_signed). With k = ceil(p N), N = all values:
///   max = the k-th smallest value (from `positive`, or 0 if it is negative)
///   min = minus the k-th smallest of -x (from `negative`, or 0)
/// so each tail drops at most the fraction 1 - p, and p = 1 gives [min x, max x].
inline void percentile_range(const Histogram& negative, const Histogram& positive, double p, float& rmin,
                             float& rmax) {
    BPUQ_CHECK(p > 0.0 && p <= 1.0, "observe.percentile",
               "percentile " + std::to_string(p) + " must be in (0, 1] (e.g. 0.99995; 1 means the maximum)");
    rmin = rmax = 0.0f;
    const std::uint64_t n = negative.total() + positive.total();
    if (n == 0) return;
    const std::uint64_t k = detail::percentile_rank(p, n);
    if (k > negative.total()) rmax = detail::rank_upper_bound(positive, k - negative.total());
    if (k > positive.total()) rmin = -detail::rank_upper_bound(negative, k - positive.total());
}

/// The `max` method on a histogram: the largest |x| observed.
inline float max_threshold(const Histogram& h) noexcept { return h.absmax(); }

BPUQ_NAMESPACE_END
