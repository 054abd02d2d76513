// Requantization as an output pipeline: bias -> multiply+shift -> zero point -> clamp -> cast.
//
// Each stage is a small struct whose call operator maps (value, channel) to a value; a
// pipeline is a fold over its stages. The integer kernels build their epilogue from these so
// that the normative arithmetic is written once.
#pragma once

#include <cstdint>
#include <limits>
#include <tuple>
#include <utility>

#include "../core/fixed_point.hpp"

BPUQ_NAMESPACE_BEGIN

/// acc + bias[c]   (int32 bias, quantized with scale s_in * s_w[c]; absent -> identity)
struct StageBiasAdd {
    const std::int32_t* bias = nullptr;
    template <class Acc>
    Acc operator()(Acc v, std::size_t c) const noexcept {
        return bias ? v + static_cast<Acc>(bias[c]) : v;
    }
};

/// round(v * m0[c] / 2^(31 - shift[c])), single rounding with the policy's ties, saturated to
/// the int32 range (every output type fits in it, so later stages cannot overflow).
/// Per-tensor when `per_channel` is false (index 0 for every channel).
template <class RoundingPolicy = RoundHalfAwayFromZero>
struct StageScaleFixedPoint {
    const QuantizedMultiplier* multipliers = nullptr;
    bool per_channel = false;
    template <class Acc>
    std::int64_t operator()(Acc v, std::size_t c) const noexcept {
        return clamp_value<std::int64_t>(
            multiply_by_quantized_multiplier<RoundingPolicy>(v, multipliers[per_channel ? c : 0]),
            std::numeric_limits<std::int32_t>::min(), std::numeric_limits<std::int32_t>::max());
    }
};

/// v + zp   (in int64: cannot overflow after the multiplier)
struct StageAddZeroPoint {
    std::int32_t zero_point = 0;
    std::int64_t operator()(std::int64_t v, std::size_t) const noexcept { return v + zero_point; }
};

/// clamp(v, lo, hi) — also where ReLU (lo = zp), ReLU6 and Clip are folded in.
struct StageClamp {
    std::int32_t lo = -128;
    std::int32_t hi = 127;
    std::int64_t operator()(std::int64_t v, std::size_t) const noexcept { return clamp_value<std::int64_t>(v, lo, hi); }
};

/// Saturating cast to the output type (int8, int16 or int32).
template <class Out>
struct StageSaturatingCast {
    Out operator()(std::int64_t v, std::size_t) const noexcept { return saturate_cast<Out>(v); }
};

/// A composition of stages, applied left to right.
template <class... Stages>
struct OutputPipeline {
    std::tuple<Stages...> stages;

    template <class Acc>
    auto operator()(Acc v, std::size_t channel) const noexcept {
        return apply(v, channel, std::index_sequence_for<Stages...>{});
    }

private:
    template <class V, std::size_t... I>
    auto apply(V v, std::size_t c, std::index_sequence<I...>) const noexcept {
        return run(v, c, std::get<I>(stages)...);
    }
    template <class V>
    static V run(V v, std::size_t) noexcept {
        return v;
    }
    template <class V, class S, class... Rest>
    static auto run(V v, std::size_t c, const S& s, const Rest&... rest) noexcept {
        return run(s(v, c), c, rest...);
    }
};

template <class... Stages>
OutputPipeline<Stages...> make_output_pipeline(Stages... s) {
    return OutputPipeline<Stages...>{std::tuple<Stages...>(s...)};
}

/// The standard conv/gemm epilogue: bias, fixed-point scale, zero point, clamp, cast.
template <class Out, class RoundingPolicy = RoundHalfAwayFromZero>
inline auto make_requantize_pipeline(const std::int32_t* bias, const QuantizedMultiplier* multipliers, bool per_channel,
                                     std::int32_t zero_point, std::int32_t lo, std::int32_t hi) {
    return make_output_pipeline(StageBiasAdd{bias}, StageScaleFixedPoint<RoundingPolicy>{multipliers, per_channel},
                                StageAddZeroPoint{zero_point}, StageClamp{lo, hi}, StageSaturatingCast<Out>{});
}

BPUQ_NAMESPACE_END
