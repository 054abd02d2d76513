// Normative lookup-table activations (int8: 256 entries; int16: 513-entry interpolated) and softmax.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../params.hpp"

BPUQ_NAMESPACE_BEGIN

/// int8 input -> int8/int16 output through a 256-entry table:
///   table[q + 128] = quantize(f(dequantize(q, s_in, zp_in)), s_out, zp_out)
/// The table is data of the integer program; f is evaluated once per entry, in float, when the
/// program is built (Sigmoid, Tanh, Exp, SiLU, HardSwish, GELU, reciprocal, ...).
template <class TOut = std::int8_t>
struct LutInt8 {
    std::array<TOut, 256> table{};

    template <class Fn, class Round = RoundHalfAwayFromZero>
    static LutInt8 build(Fn&& f, float s_in, std::int32_t zp_in, float s_out, std::int32_t zp_out, std::int32_t qmin,
                         std::int32_t qmax) {
        LutInt8 lut;
        for (int q = -128; q <= 127; ++q)
            lut.table[static_cast<std::size_t>(q + 128)] = static_cast<TOut>(
                quantize_value<Round>(static_cast<float>(f(dequantize_value(q, s_in, zp_in))), s_out, zp_out, qmin, qmax));
        return lut;
    }
    TOut operator()(std::int8_t q) const noexcept { return table[static_cast<std::size_t>(q + 128)]; }
};

/// int16 input -> int16/int8 output through 513 samples of f (one every 128 input steps),
/// linearly interpolated in fixed point:
///   i = (q + 32768) >> 7,  r = (q + 32768) & 127
///   out = clamp(T[i] + round((T[i+1] - T[i]) * r / 128), qmin, qmax)
/// T[i] = round(f(dequantize(128 i - 32768)) / s_out) + zp_out is kept unclamped in int32 (the
/// sample at 32768 lies one step beyond the int16 range), so the interpolation near the
/// saturation bounds is not bent by the clamp.
template <class TOut = std::int16_t>
struct LutInt16 {
    std::vector<std::int32_t> table = std::vector<std::int32_t>(513);
    std::int32_t qmin = -32768, qmax = 32767;

    template <class Fn, class Round = RoundHalfAwayFromZero>
    static LutInt16 build(Fn&& f, float s_in, float s_out, std::int32_t zp_out, std::int32_t qmin, std::int32_t qmax) {
        LutInt16 lut;
        lut.qmin = qmin;
        lut.qmax = qmax;
        const float big = static_cast<float>(1 << 30);
        for (int i = 0; i <= 512; ++i) {
            const float x = static_cast<float>(i * 128 - 32768) * s_in;  // int16 tensors have zp 0
            float v = static_cast<float>(f(x)) / s_out;
            v = v != v ? 0.0f : std::min(std::max(v, -big), big);
            lut.table[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(round_float<Round>(v)) + zp_out;
        }
        return lut;
    }
    template <class Round = RoundHalfAwayFromZero>
    TOut apply(std::int16_t q) const noexcept {
        const std::int32_t u = std::int32_t(q) + 32768;
        const std::int32_t i = u >> 7, r = u & 127;
        const std::int64_t a = table[static_cast<std::size_t>(i)], b = table[static_cast<std::size_t>(i) + 1];
        const std::int64_t v = a + rounding_shift_right<Round>((b - a) * r, 7);
        return static_cast<TOut>(clamp_value<std::int64_t>(v, qmin, qmax));
    }
};

namespace reference {

template <class TOut>
inline void apply_lut(const std::int8_t* in, std::int64_t n, const LutInt8<TOut>& lut, TOut* out) noexcept {
    for (std::int64_t i = 0; i < n; ++i) out[i] = lut(in[i]);
}

template <class Round = RoundHalfAwayFromZero, class TOut>
inline void apply_lut(const std::int16_t* in, std::int64_t n, const LutInt16<TOut>& lut, TOut* out) noexcept {
    for (std::int64_t i = 0; i < n; ++i) out[i] = lut.template apply<Round>(in[i]);
}

/// Softmax over the innermost axis, the documented float ("CPU") fallback: each row is
/// dequantized, x - max(x) exponentiated with std::exp in float, normalized by the float sum
/// accumulated in double (deterministic left-to-right order), and quantized with the
/// normative quantize_value. Not part of the bit-exact BPU arithmetic: results may differ in
/// the last step across C libraries whose expf differ.
template <class Round = RoundHalfAwayFromZero, class TIn, class TOut>
inline void softmax_float(const TIn* in, std::int64_t rows, std::int64_t cols, float s_in, std::int32_t zp_in,
                          float s_out, std::int32_t zp_out, std::int32_t qmin, std::int32_t qmax, TOut* out) {
    BPUQ_CHECK(rows >= 0 && cols > 0, "kernels.softmax", "softmax needs a positive row length");
    std::vector<float> e(static_cast<std::size_t>(cols));
    for (std::int64_t r = 0; r < rows; ++r) {
        const TIn* x = in + r * cols;
        const TIn qmax_in = *std::max_element(x, x + cols);
        double sum = 0.0;
        for (std::int64_t j = 0; j < cols; ++j) {
            e[static_cast<std::size_t>(j)] = std::exp(static_cast<float>(std::int32_t(x[j]) - qmax_in) * s_in);
            sum += e[static_cast<std::size_t>(j)];
        }
        const float inv = static_cast<float>(1.0 / sum);
        (void)zp_in;  // the zero point cancels in x - max(x)
        for (std::int64_t j = 0; j < cols; ++j)
            out[r * cols + j] =
                static_cast<TOut>(quantize_value<Round>(e[static_cast<std::size_t>(j)] * inv, s_out, zp_out, qmin, qmax));
    }
}

}  // namespace reference
BPUQ_NAMESPACE_END
