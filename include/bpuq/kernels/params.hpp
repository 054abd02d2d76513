// Runtime descriptions shared by the reference and SIMD kernels: geometry, requantization, bounds.
//
// Layouts (docs/ARITHMETIC.md "Kernels: layouts"): activations are NHWC, convolution weights
// are OHWI ([C_out][K_h][K_w][C_in / groups]), GEMM weights are [N][K] (ONNX Gemm with
// transB = 1). Everything here is plain data so that code above the template watershed (the
// integer program) can hold and serialize it.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "../core/fixed_point.hpp"
#include "../quant/output_stages.hpp"
#include "../quant/quantize.hpp"

BPUQ_NAMESPACE_BEGIN

/// Dot-product accumulator: int32 for int8 x int8 (|sum| < 2^31 for any K below 2^16 * 2),
/// int64 as soon as one operand is int16.
template <class TIn, class TW>
using accumulator_t =
    typename std::conditional<sizeof(TIn) == 1 && sizeof(TW) == 1, std::int32_t, std::int64_t>::type;

template <class T>
constexpr bool is_activation_type = std::is_same<T, std::int8_t>::value || std::is_same<T, std::int16_t>::value;
template <class T>
constexpr bool is_output_type = is_activation_type<T> || std::is_same<T, std::int32_t>::value;

/// The output stage of a conv / gemm: out[c] = clamp(zp + round((acc + bias[c]) * M_c), lo, hi).
/// `multipliers` holds one entry per output channel (per_channel) or one for all.
struct Requantization {
    const std::int32_t* bias = nullptr;                // int32 at scale s_in * s_w[c]; may be null
    const QuantizedMultiplier* multipliers = nullptr;  // M_c = s_in * s_w[c] / s_out
    bool per_channel = true;
    std::int32_t zero_point = 0;  // of the output
    std::int32_t lo = -128;       // saturation bounds: the output range with ReLU/ReLU6/Clip folded in
    std::int32_t hi = 127;

    const QuantizedMultiplier& multiplier(std::size_t c) const noexcept { return multipliers[per_channel ? c : 0]; }
    std::int32_t bias_of(std::size_t c) const noexcept { return bias ? bias[c] : 0; }
};

/// Activation fused into the saturation bounds of an output stage.
enum class FusedActivation { none, relu, relu6, clip };

/// [lo, hi] for an output with scale `scale`, zero point `zp` and storage range [qmin, qmax]
/// after a fused activation (clip bounds in real units are used for `clip` only). A bound is
/// the quantized image of the real bound (quantize_value, half away from zero), intersected
/// with the storage range: ReLU -> lo = zp; ReLU6 -> hi = quantize(6); Clip(a, b).
inline void fused_activation_bounds(FusedActivation act, float scale, std::int32_t zp, std::int32_t qmin,
                                    std::int32_t qmax, std::int32_t& lo, std::int32_t& hi, float clip_min = 0.0f,
                                    float clip_max = 0.0f) {
    lo = qmin;
    hi = qmax;
    auto q = [&](float x) { return quantize_value(x, scale, zp, qmin, qmax); };
    switch (act) {
        case FusedActivation::none: break;
        case FusedActivation::relu: lo = std::max(qmin, std::min(qmax, zp)); break;
        case FusedActivation::relu6:
            lo = std::max(qmin, std::min(qmax, zp));
            hi = q(6.0f);
            break;
        case FusedActivation::clip:
            BPUQ_CHECK(clip_min <= clip_max, "kernels.clip",
                       "Clip bounds [" + std::to_string(clip_min) + ", " + std::to_string(clip_max) + "] are reversed");
            lo = q(clip_min);
            hi = q(clip_max);
            break;
    }
}

/// Geometry of a 2-D convolution over NHWC activations and OHWI weights.
struct Conv2dGeometry {
    int batch = 1;
    int in_h = 1, in_w = 1, in_c = 1;
    int out_c = 1;
    int kernel_h = 1, kernel_w = 1;
    int stride_h = 1, stride_w = 1;
    int dilation_h = 1, dilation_w = 1;
    int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
    int groups = 1;

    int out_h() const noexcept { return (in_h + pad_top + pad_bottom - dilation_h * (kernel_h - 1) - 1) / stride_h + 1; }
    int out_w() const noexcept { return (in_w + pad_left + pad_right - dilation_w * (kernel_w - 1) - 1) / stride_w + 1; }
    int in_c_per_group() const noexcept { return in_c / groups; }
    int out_c_per_group() const noexcept { return out_c / groups; }
    bool is_depthwise() const noexcept { return groups == in_c && groups == out_c && groups > 1; }
    std::int64_t input_size() const noexcept { return std::int64_t(batch) * in_h * in_w * in_c; }
    std::int64_t output_size() const noexcept { return std::int64_t(batch) * out_h() * out_w() * out_c; }
    std::int64_t weight_size() const noexcept { return std::int64_t(out_c) * kernel_h * kernel_w * in_c_per_group(); }
    /// Multiply-accumulates of one inference (for GOPS = 2 * macs / s).
    std::int64_t macs() const noexcept {
        return std::int64_t(batch) * out_h() * out_w() * out_c * kernel_h * kernel_w * in_c_per_group();
    }

    std::string to_string() const {
        return "conv N" + std::to_string(batch) + " H" + std::to_string(in_h) + " W" + std::to_string(in_w) + " Cin" +
               std::to_string(in_c) + " Cout" + std::to_string(out_c) + " K" + std::to_string(kernel_h) + "x" +
               std::to_string(kernel_w) + " S" + std::to_string(stride_h) + "x" + std::to_string(stride_w) + " D" +
               std::to_string(dilation_h) + "x" + std::to_string(dilation_w) + " P" + std::to_string(pad_top) + "," +
               std::to_string(pad_left) + "," + std::to_string(pad_bottom) + "," + std::to_string(pad_right) + " G" +
               std::to_string(groups);
    }

    /// Throws kernels.conv naming the offending field when the geometry is not computable.
    void validate() const {
        auto positive = [&](int v, const char* name) {
            BPUQ_CHECK(v > 0, "kernels.conv", to_string() + ": " + name + " must be positive, got " + std::to_string(v));
        };
        positive(batch, "batch");
        positive(in_h, "in_h");
        positive(in_w, "in_w");
        positive(in_c, "in_c");
        positive(out_c, "out_c");
        positive(kernel_h, "kernel_h");
        positive(kernel_w, "kernel_w");
        positive(stride_h, "stride_h");
        positive(stride_w, "stride_w");
        positive(dilation_h, "dilation_h");
        positive(dilation_w, "dilation_w");
        positive(groups, "groups");
        BPUQ_CHECK(pad_top >= 0 && pad_left >= 0 && pad_bottom >= 0 && pad_right >= 0, "kernels.conv",
                   to_string() + ": padding must be non-negative");
        BPUQ_CHECK(in_c % groups == 0 && out_c % groups == 0, "kernels.conv",
                   to_string() + ": groups " + std::to_string(groups) + " must divide in_c and out_c");
        BPUQ_CHECK(out_h() > 0 && out_w() > 0, "kernels.conv",
                   to_string() + ": the dilated kernel is larger than the padded input");
        BPUQ_CHECK(in_c_per_group() * std::int64_t(kernel_h) * kernel_w <= (std::int64_t(1) << 16), "kernels.conv",
                   to_string() + ": a reduction of more than 65536 terms could overflow the int32 accumulator");
    }
};

/// The output stage applied to one accumulator, through quant/output_stages.hpp's pipeline
/// (bias -> single-rounding multiplier saturated to int32 -> zero point -> clamp -> cast).
template <class TOut, class Round, class Acc>
inline TOut requantize_output(Acc acc, const Requantization& rq, std::size_t c) noexcept {
    return make_requantize_pipeline<TOut, Round>(rq.bias, rq.multipliers, rq.per_channel, rq.zero_point, rq.lo,
                                                 rq.hi)(acc, c);
}

BPUQ_NAMESPACE_END
