// KL (entropy) threshold search on a histogram of |x|: the TensorRT variant, O(levels) per candidate.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "histogram.hpp"

BPUQ_NAMESPACE_BEGIN

/// Where the threshold sits for the best number of kept bins i*.
enum class KlThresholdPlacement {
    bin_centre,  ///< T = (i* + 0.5) w  (ncnn; ALGORITHMS.md)
    bin_edge,    ///< T = i* w          (NVIDIA pytorch-quantization)
};

struct KlOptions {
    /// Search on a histogram reduced to at most this many bins by summing groups of
    /// ceil(bins / search_bins) adjacent bins (Horizon: num_bin = 1024; NVIDIA searches its
    /// 2048+ collection bins directly). 0 searches the histogram as collected.
    std::size_t search_bins = 1024;
    KlThresholdPlacement placement = KlThresholdPlacement::bin_centre;
    /// A bin with P > 0 but Q = 0 (only possible for the bin that receives the folded
    /// outliers when its own count is 0) contributes p ln(p / epsilon) (normalized p).
    /// 0 makes such a candidate's KL infinite, as SciPy's entropy() does (NVIDIA).
    double epsilon = 1e-10;
    /// Replace bin 0's count by bin 1's before the search (NVIDIA: discounts the zeros of
    /// ReLU outputs, which would otherwise dominate P).
    bool zero_bin_as_next = false;

    /// Horizon-like defaults: search on <= 1024 bins, threshold at the bin centre.
    static KlOptions horizon() { return KlOptions{}; }
    /// NVIDIA pytorch-quantization's choices: search every collected bin, threshold at the
    /// bin edge, Q = 0 < P is infinite, bin 0 counted like bin 1.
    static KlOptions nvidia() {
        KlOptions o;
        o.search_bins = 0;
        o.placement = KlThresholdPlacement::bin_edge;
        o.epsilon = 0.0;
        o.zero_bin_as_next = true;
        return o;
    }
};

struct KlResult {
    float threshold = 0.0f;    ///< the clip value (never above max |x|)
    std::size_t kept_bins = 0;  ///< i*, on the search grid
    std::size_t search_bins = 0;  ///< bins of the search grid
    double search_width = 0.0;  ///< bin width of the search grid
    double divergence = 0.0;    ///< KL at i* (0 when no clipping candidate exists)
};

namespace detail {

inline int kl_levels(int bits) {
    BPUQ_CHECK(bits == 8 || bits == 16, "observe.bits",
               "threshold search bit width " + std::to_string(bits) + " is not supported; use 8 or 16");
    return 1 << (bits - 1);
}

/// KL_i for every candidate i = levels .. B (index i - levels of the result), per
/// ALGORITHMS.md §2. With prefix sums over the bins
///   S0[j] = sum_{t<j} H_t,  S1[j] = sum_{t<j} H_t ln H_t,  C[j] = #{t < j : H_t > 0}
/// every group k of bins [a_k, b_k), a_k = ceil(k i / L), costs O(1):
///   N KL_i = sum_j P_j ln P_j - sum_j P_j ln Q_j + N ln(S0[i] / N)   (P sums to N, Q to S0[i])
///   sum_j P_j ln P_j = S1[i-1] + P_{i-1} ln P_{i-1},   P_{i-1} = H_{i-1} + (N - S0[i])
///   sum_j P_j ln Q_j = sum_k g_k ln(g_k / c_k) (+ the outlier mass on the last bin)
/// with g_k = S0[b_k] - S0[a_k] and c_k = C[b_k] - C[a_k]; Q sums to S0[i].
inline std::vector<double> kl_divergences(const std::uint64_t* h, std::size_t bins, int levels, double epsilon) {
    std::vector<double> out;
    const std::size_t L = static_cast<std::size_t>(levels);
    if (bins < L) return out;
    std::vector<double> s0(bins + 1, 0.0), s1(bins + 1, 0.0);
    std::vector<std::uint64_t> cnt(bins + 1, 0);
    for (std::size_t j = 0; j < bins; ++j) {
        const double v = static_cast<double>(h[j]);
        s0[j + 1] = s0[j] + v;
        s1[j + 1] = s1[j] + (h[j] ? v * std::log(v) : 0.0);
        cnt[j + 1] = cnt[j] + (h[j] ? 1 : 0);
    }
    const double n = s0[bins];
    out.assign(bins - L + 1, std::numeric_limits<double>::infinity());
    if (!(n > 0.0)) return out;
    const double log_n = std::log(n);
    // ln of every possible non-empty-bin count: one log per group instead of a log and a divide.
    std::vector<double> log_count(bins + 1, 0.0);
    for (std::size_t c = 1; c <= bins; ++c) log_count[c] = std::log(static_cast<double>(c));
    for (std::size_t i = L; i <= bins; ++i) {
        const double kept = s0[i];
        if (!(kept > 0.0)) continue;  // Q would be all zero: not a candidate
        const double outliers = n - kept;
        const double h_last = static_cast<double>(h[i - 1]);
        const double p_last = h_last + outliers;
        double plogp = s1[i - 1] + (p_last > 0.0 ? p_last * std::log(p_last) : 0.0);
        double plogq = 0.0;
        for (std::size_t k = 0; k < L; ++k) {
            const std::size_t a = (k * i + L - 1) / L, b = ((k + 1) * i + L - 1) / L;
            const std::uint64_t c = cnt[b] - cnt[a];
            if (c == 0) continue;
            const double g = s0[b] - s0[a];
            plogq += g * (std::log(g) - log_count[c]);
        }
        // The last group holds bin i-1: its P is h_last + outliers, not h_last.
        const std::size_t a_last = ((L - 1) * i + L - 1) / L;
        const std::uint64_t c_last = cnt[i] - cnt[a_last];
        double extra = 0.0;     // KL term of bin i-1 when Q_{i-1} = 0 (already normalized)
        double included = n;    // P mass of the bins where Q > 0
        if (outliers > 0.0) {
            if (h_last > 0.0) {
                const double g = s0[i] - s0[a_last];
                plogq += outliers * (std::log(g) - log_count[c_last]);
            } else {
                if (epsilon == 0.0) continue;  // infinite: not a candidate
                // P_{i-1} > 0 = Q_{i-1}: smoothed term, and keep it out of the closed form.
                plogp -= p_last * std::log(p_last);
                const double p = p_last / n;
                extra = p * std::log(p / epsilon);
                included = n - p_last;
            }
        }
        out[i - L] = (plogp - plogq) / n + (included / n) * (std::log(kept) - log_n) + extra;
    }
    return out;
}

}  // namespace detail

/// Entropy calibration (ALGORITHMS.md §2, TensorRT variant): choose the number of kept bins
/// i in [L, B] (L = 2^(bits-1)) minimizing KL(P || Q), P = the kept bins with the outliers
/// folded into the last one, Q = P's L-level requantization expanded over its non-empty bins.
/// Ties go to the larger i (less clipping). When the search grid has fewer than L bins,
/// L levels resolve every bin: no clipping, T = max |x|.
inline KlResult kl_search(const Histogram& h, int bits = 8, const KlOptions& opt = {}) {
    const int levels = detail::kl_levels(bits);
    BPUQ_CHECK(opt.search_bins == 0 || opt.search_bins >= 2, "observe.bins",
               "KL search bin count " + std::to_string(opt.search_bins) + " must be 0 (as collected) or >= 2");
    BPUQ_CHECK(opt.epsilon >= 0.0, "observe.kl",
               "KL smoothing epsilon " + std::to_string(opt.epsilon) + " must be >= 0 (0: infinite penalty)");
    KlResult r;
    r.threshold = h.absmax();
    if (h.empty() || !(h.absmax() > 0.0f)) return r;

    const std::uint64_t* grid = h.data();
    std::size_t bins = h.bins();
    std::vector<std::uint64_t> reduced;
    std::size_t factor = 1;
    if (opt.search_bins != 0 && h.bins() > opt.search_bins) {
        factor = (h.bins() + opt.search_bins - 1) / opt.search_bins;
        reduced.assign((h.bins() + factor - 1) / factor, 0);
        for (std::size_t j = 0; j < h.bins(); ++j) reduced[j / factor] += h.count(j);
        grid = reduced.data();
        bins = reduced.size();
    }
    if (opt.zero_bin_as_next && bins >= 2) {
        if (reduced.empty()) reduced.assign(grid, grid + bins);
        reduced[0] = reduced[1];
        grid = reduced.data();
        if (std::all_of(reduced.begin(), reduced.end(), [](std::uint64_t c) { return c == 0; })) return r;
    }
    r.search_bins = bins;
    r.search_width = h.bin_width() * static_cast<double>(factor);
    r.kept_bins = bins;
    if (bins <= static_cast<std::size_t>(levels)) return r;

    const std::vector<double> kl = detail::kl_divergences(grid, bins, levels, opt.epsilon);
    std::size_t best = kl.size() - 1;
    for (std::size_t t = 0; t < kl.size(); ++t)
        if (kl[t] <= kl[best]) best = t;  // scanning upward with <=: the last minimum wins
    r.kept_bins = best + static_cast<std::size_t>(levels);
    r.divergence = kl[best];
    const double offset = opt.placement == KlThresholdPlacement::bin_centre ? 0.5 : 0.0;
    const double t = (static_cast<double>(r.kept_bins) + offset) * r.search_width;
    r.threshold = std::min(static_cast<float>(t), h.absmax());
    return r;
}

/// The KL threshold alone.
inline float kl_threshold(const Histogram& h, int bits = 8, const KlOptions& opt = {}) {
    return kl_search(h, bits, opt).threshold;
}

BPUQ_NAMESPACE_END
