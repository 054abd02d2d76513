// QParams: runtime scales and zero points (one or per channel), computed from a range.
#pragma once

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "bit_traits.hpp"
#include "config.hpp"
#include "error.hpp"

BPUQ_NAMESPACE_BEGIN

/// Runtime quantization parameters of one tensor: real = scale * (q - zero_point).
/// Per-tensor when `axis < 0` (one scale), else one scale/zero point per index of `axis`.
struct QParams {
    std::vector<float> scale{1.0f};
    std::vector<std::int32_t> zero_point{0};
    int axis = -1;
    int bits = 8;
    bool symmetric = true;
    /// Symmetric "narrow" range [-qmax, qmax] (weights) instead of [qmin, qmax].
    bool narrow = false;

    bool per_channel() const noexcept { return axis >= 0; }
    std::size_t channels() const noexcept { return scale.size(); }
    std::int32_t qmin() const noexcept { return narrow ? -qmax_of(bits) : qmin_of(bits); }
    std::int32_t qmax() const noexcept { return qmax_of(bits); }
};

namespace detail {
inline void check_range(float rmin, float rmax, const char* what) {
    BPUQ_CHECK(std::isfinite(rmin) && std::isfinite(rmax), "qparams.range",
               std::string(what) + ": range [" + std::to_string(rmin) + ", " + std::to_string(rmax) +
                   "] is not finite (NaN or Inf in the calibration data?)");
    BPUQ_CHECK(rmin <= rmax, "qparams.range",
               std::string(what) + ": range minimum " + std::to_string(rmin) + " exceeds maximum " +
                   std::to_string(rmax));
    (void)what;
}

/// Scale and zero point for one range (ALGORITHMS.md §1). Degenerate ranges get scale 1.
inline void range_to_scale(float rmin, float rmax, int bits, bool symmetric, bool narrow, float& scale,
                           std::int32_t& zero_point) {
    check_range(rmin, rmax, "quantization range");
    BPUQ_CHECK(bits == 8 || bits == 16, "qparams.bits",
               "bit width " + std::to_string(bits) + " is not supported; the BPU has 8 and 16");
    // The range always includes 0 so that 0.0 (padding, ReLU floor) is exact.
    rmin = std::min(rmin, 0.0f);
    rmax = std::max(rmax, 0.0f);
    const std::int32_t qmax = qmax_of(bits);
    const std::int32_t qmin = narrow ? -qmax : qmin_of(bits);
    if (symmetric) {
        const float a = std::max(-rmin, rmax);
        scale = a / static_cast<float>(qmax);
        zero_point = 0;
    } else {
        scale = (rmax - rmin) / static_cast<float>(qmax - qmin);
        zero_point = 0;
        if (scale >= FLT_MIN && std::isfinite(scale)) {
            const float zp = std::round(static_cast<float>(qmin) - rmin / scale);
            zero_point = static_cast<std::int32_t>(std::min(std::max(zp, static_cast<float>(qmin)),
                                                             static_cast<float>(qmax)));
        }
    }
    // All-zero tensors (and ranges below the smallest normal float) would give a zero or
    // denormal scale: every value quantizes to the zero point anyway, so use 1.
    if (!(scale >= FLT_MIN) || !std::isfinite(scale)) {
        scale = 1.0f;
        zero_point = 0;
    }
}
}  // namespace detail

/// Per-tensor parameters from a range [rmin, rmax].
inline QParams qparams_from_range(float rmin, float rmax, int bits = 8, bool symmetric = true, bool narrow = false) {
    QParams p;
    p.bits = bits;
    p.symmetric = symmetric;
    p.narrow = narrow;
    detail::range_to_scale(rmin, rmax, bits, symmetric, narrow, p.scale[0], p.zero_point[0]);
    return p;
}

/// Symmetric per-tensor parameters from a threshold (|x| clipped at `threshold`).
inline QParams qparams_from_threshold(float threshold, int bits = 8, bool narrow = false) {
    BPUQ_CHECK(threshold >= 0.0f, "qparams.range",
               "threshold " + std::to_string(threshold) + " must be finite and >= 0");
    return qparams_from_range(-threshold, threshold, bits, true, narrow);
}

/// Per-channel parameters along `axis` from one range per channel.
inline QParams qparams_from_ranges(const std::vector<float>& rmin, const std::vector<float>& rmax, int axis,
                                   int bits = 8, bool symmetric = true, bool narrow = false) {
    BPUQ_CHECK(rmin.size() == rmax.size() && !rmin.empty(), "qparams.channels",
               "per-channel ranges need the same non-zero number of minima and maxima (got " +
                   std::to_string(rmin.size()) + " and " + std::to_string(rmax.size()) + ")");
    BPUQ_CHECK(axis >= 0, "qparams.axis", "per-channel parameters need an axis >= 0");
    QParams p;
    p.axis = axis;
    p.bits = bits;
    p.symmetric = symmetric;
    p.narrow = narrow;
    p.scale.assign(rmin.size(), 1.0f);
    p.zero_point.assign(rmin.size(), 0);
    for (std::size_t c = 0; c < rmin.size(); ++c)
        detail::range_to_scale(rmin[c], rmax[c], bits, symmetric, narrow, p.scale[c], p.zero_point[c]);
    return p;
}

/// Per-channel activation parameters along `axis` whose channels share one zero point: the zero
/// point of the union range [min rmin, max rmax], and per channel the smallest scale whose grid
/// covers that channel's range around it. The integer kernels take one input zero point (padding
/// holds it), so per-channel activations differ only in their scales (DECISIONS.md #44). A channel
/// that never left zero takes the union's scale: any scale represents it, and the union's keeps a
/// fused clip's integer bound the same in every channel.
inline QParams qparams_from_ranges_shared_zero_point(const std::vector<float>& rmin, const std::vector<float>& rmax, int axis,
                                                     int bits = 8, bool symmetric = true) {
    BPUQ_CHECK(rmin.size() == rmax.size() && !rmin.empty(), "qparams.channels",
               "per-channel ranges need the same non-zero number of minima and maxima (got " +
                   std::to_string(rmin.size()) + " and " + std::to_string(rmax.size()) + ")");
    BPUQ_CHECK(axis >= 0, "qparams.axis", "per-channel parameters need an axis >= 0");
    float lo = 0.0f, hi = 0.0f;
    for (std::size_t c = 0; c < rmin.size(); ++c) {
        detail::check_range(rmin[c], rmax[c], "quantization range");
        lo = std::min(lo, rmin[c]);
        hi = std::max(hi, rmax[c]);
    }
    const QParams whole = qparams_from_range(lo, hi, bits, symmetric);
    QParams p = whole;
    p.axis = axis;
    p.scale.assign(rmin.size(), whole.scale[0]);
    p.zero_point.assign(rmin.size(), whole.zero_point[0]);
    const std::int32_t z = whole.zero_point[0], qmin = whole.qmin(), qmax = whole.qmax();
    for (std::size_t c = 0; c < rmin.size(); ++c) {
        const float cl = std::min(rmin[c], 0.0f), ch = std::max(rmax[c], 0.0f);
        float s = 0.0f;
        if (symmetric) {
            s = std::max(-cl, ch) / static_cast<float>(qmax);
        } else {
            if (qmax > z) s = std::max(s, ch / static_cast<float>(qmax - z));
            if (z > qmin) s = std::max(s, -cl / static_cast<float>(z - qmin));
        }
        if (s >= FLT_MIN && std::isfinite(s)) p.scale[c] = s;
    }
    return p;
}

BPUQ_NAMESPACE_END
