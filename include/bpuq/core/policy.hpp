// Compile-time policy tags: symmetry, granularity and rounding of a quantizer or kernel.
#pragma once

#include <type_traits>

#include "config.hpp"

BPUQ_NAMESPACE_BEGIN

// ---- symmetry -------------------------------------------------------------------------
/// Zero point fixed at 0; range [-a, a] with a = max(|min|, |max|).
struct Symmetric {
    static constexpr bool is_symmetric = true;
    static constexpr const char* name = "symmetric";
};
/// Zero point chosen so that [min, max] maps onto [qmin, qmax].
struct Asymmetric {
    static constexpr bool is_symmetric = false;
    static constexpr const char* name = "asymmetric";
};

// ---- granularity ----------------------------------------------------------------------
/// One scale / zero point for the whole tensor.
struct PerTensor {
    static constexpr bool is_per_channel = false;
    static constexpr int axis = -1;
    static constexpr const char* name = "per-tensor";
};
/// One scale / zero point per index of `Axis` (axis 1 = C of NCHW activations,
/// axis 0 = output channels of Conv weights).
template <int Axis>
struct PerChannel {
    static_assert(Axis >= 0, "bpuq: PerChannel<Axis> needs a non-negative axis");
    static constexpr bool is_per_channel = true;
    static constexpr int axis = Axis;
    static constexpr const char* name = "per-channel";
};

// ---- rounding ---------------------------------------------------------------------------
/// round(2.5) = 3, round(-2.5) = -3: std::round, Horizon's documented quantizer.
struct RoundHalfAwayFromZero {
    static constexpr const char* name = "half-away-from-zero";
};
/// round(2.5) = 2, round(3.5) = 4: ONNX QuantizeLinear, std::nearbyint in the default mode.
struct RoundHalfToEven {
    static constexpr const char* name = "half-to-even";
};

// ---- traits used by static_asserts ------------------------------------------------------
template <class T>
struct is_symmetry_policy : std::false_type {};
template <>
struct is_symmetry_policy<Symmetric> : std::true_type {};
template <>
struct is_symmetry_policy<Asymmetric> : std::true_type {};

template <class T>
struct is_granularity_policy : std::false_type {};
template <>
struct is_granularity_policy<PerTensor> : std::true_type {};
template <int Axis>
struct is_granularity_policy<PerChannel<Axis>> : std::true_type {};

template <class T>
struct is_rounding_policy : std::false_type {};
template <>
struct is_rounding_policy<RoundHalfAwayFromZero> : std::true_type {};
template <>
struct is_rounding_policy<RoundHalfToEven> : std::true_type {};

/// Runtime mirror of the rounding tags, for code above the template watershed.
enum class Rounding : int { half_away_from_zero = 0, half_to_even = 1 };

template <class R>
constexpr Rounding rounding_of() noexcept {
    static_assert(is_rounding_policy<R>::value,
                  "bpuq: rounding policy must be RoundHalfAwayFromZero or RoundHalfToEven");
    return std::is_same<R, RoundHalfToEven>::value ? Rounding::half_to_even
                                                   : Rounding::half_away_from_zero;
}

BPUQ_NAMESPACE_END
