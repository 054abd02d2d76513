// Float -> integer rounding under a compile-time policy, independent of the FPU rounding mode.
#pragma once

#include <cmath>
#include <cstdint>

#include "../core/policy.hpp"

BPUQ_NAMESPACE_BEGIN

/// Round a float to an integral float. Both rules are written as trunc + a correction from the
/// exact fraction v - trunc(v), so the SIMD kernels can use the very same formula and match bit
/// for bit, whatever the current FE rounding mode is.
template <class RoundingPolicy>
inline float round_float(float v) noexcept {
    const float t = std::trunc(v);
    const float frac = v - t;  // exact for every float
    const float sign = v < 0.0f ? -1.0f : 1.0f;
    const float afrac = std::fabs(frac);
    if (std::is_same<RoundingPolicy, RoundHalfToEven>::value) {
        if (afrac > 0.5f) return t + sign;
        if (afrac == 0.5f) return std::fmod(t, 2.0f) != 0.0f ? t + sign : t;
        return t;
    } else {
        return afrac >= 0.5f ? t + sign : t;
    }
}

/// Runtime-policy variant for code above the template watershed.
inline float round_float(float v, Rounding r) noexcept {
    return r == Rounding::half_to_even ? round_float<RoundHalfToEven>(v) : round_float<RoundHalfAwayFromZero>(v);
}

BPUQ_NAMESPACE_END
