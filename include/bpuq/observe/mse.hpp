// MSE threshold search on a histogram of |x|: the clip minimizing the expected squared error.
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
#include "kl.hpp"

BPUQ_NAMESPACE_BEGIN

struct MseResult {
    float threshold = 0.0f;  ///< the clip value a* (never above max |x|)
    std::size_t kept_bins = 0;  ///< i*: a* = i* w (or max |x| when i* = bins)
    double mse = 0.0;        ///< the model's mean squared error at a*
};

namespace detail {
/// Model MSE (per value) of clipping at a_i = i w for i = first .. B, with a_B = max |x|.
/// Values are uniform inside their bin; with step s = a / qmax (symmetric, qmax = 2^(bits-1)-1):
///   bins below a (j < i): rounding noise s^2 / 12 per value
///   bins above a (j >= i): clipped to a: E[(x - a)^2] = (c_j - a)^2 + w^2 / 12, c_j = (j + 1/2) w
/// so  N mse(a) = S0[i] s^2/12 + sum_{j>=i} H_j ((c_j - a)^2 + w^2/12), and the clipped sum is
/// R2 - 2 a R1 + a^2 R0 + R0 w^2/12 with suffix sums R0 = sum H_j, R1 = sum H_j c_j,
/// R2 = sum H_j c_j^2: O(1) per candidate.
inline std::vector<double> mse_candidates(const Histogram& h, int bits, std::size_t first) {
    const std::size_t bins = h.bins();
    std::vector<double> out;
    if (first > bins) return out;
    const double w = h.bin_width();
    const double qmax = static_cast<double>((1 << (bits - 1)) - 1);
    std::vector<double> r0(bins + 1, 0.0), r1(bins + 1, 0.0), r2(bins + 1, 0.0);
    for (std::size_t j = bins; j-- > 0;) {
        const double v = static_cast<double>(h.count(j)), c = (static_cast<double>(j) + 0.5) * w;
        r0[j] = r0[j + 1] + v;
        r1[j] = r1[j + 1] + v * c;
        r2[j] = r2[j + 1] + v * c * c;
    }
    const double n = r0[0];
    out.assign(bins - first + 1, 0.0);
    for (std::size_t i = first; i <= bins; ++i) {
        const double a = i == bins ? static_cast<double>(h.absmax()) : static_cast<double>(i) * w;
        const double s = a / qmax;
        const double inside = (n - r0[i]) * s * s / 12.0;
        const double clipped = std::max(0.0, r2[i] - 2.0 * a * r1[i] + a * a * r0[i]) + r0[i] * w * w / 12.0;
        out[i - first] = n > 0.0 ? (inside + clipped) / n : 0.0;
    }
    return out;
}
}  // namespace detail

/// MSE calibration (ALGORITHMS.md §2): among the clip values a at the bin edges from bin L
/// (L = 2^(bits-1), clipping below L bins would make the grid finer than the histogram) up to
/// max |x|, pick the one with the smallest model MSE (see detail::mse_candidates). Ties go to
/// the larger clip. A histogram with fewer than L bins is not clipped.
inline MseResult mse_search(const Histogram& h, int bits = 8) {
    const int levels = detail::kl_levels(bits);
    MseResult r;
    r.threshold = h.absmax();
    r.kept_bins = h.bins();
    if (h.empty() || !(h.absmax() > 0.0f)) return r;
    const std::size_t first = std::min(static_cast<std::size_t>(levels), h.bins());
    const std::vector<double> m = detail::mse_candidates(h, bits, first);
    std::size_t best = m.size() - 1;
    for (std::size_t t = 0; t < m.size(); ++t)
        if (m[t] <= m[best]) best = t;
    r.kept_bins = first + best;
    r.mse = m[best];
    r.threshold = r.kept_bins == h.bins() ? h.absmax()
                                          : std::min(static_cast<float>(static_cast<double>(r.kept_bins) * h.bin_width()),
                                                     h.absmax());
    return r;
}

/// The MSE threshold alone.
inline float mse_threshold(const Histogram& h, int bits = 8) { return mse_search(h, bits).threshold; }

BPUQ_NAMESPACE_END
