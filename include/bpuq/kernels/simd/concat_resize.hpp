// SIMD Concat (requantizing inputs) and nearest / bilinear Resize over NHWC, bit-identical to reference::.
//
// Concat copies inputs already on the output's grid and requantizes the others with
// requantize_span's vector lanes (the single rounding of ARITHMETIC.md §6).
// Bilinear vectorizes across channels and evaluates the reference's formula lane by lane
// (docs/ARITHMETIC.md "Resize"): the horizontal interpolation h = wx0·(q00 − zp) + wx1·(q01 − zp)
// is exact in int32 for int8 and int16 (|q − zp| < 2^16, weights ≤ 2^11, so |h| < 2^27); the
// vertical step wy0·h0 + wy1·h1 can reach 2^38 for int16, so it is formed as two 64-bit
// products per lane pair (vpmuldq) and rounded with the requantization's 64-bit rounding shift
// (round_shift_clamp64, the policy's tie rule) by 2·11 bits. One code path for both widths.
// Nearest is data movement (the reference's row copies), identical by construction.
// tests/kernels/test_simd_pooling.cpp compares each with the reference bit for bit.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "../reference/concat_resize.hpp"
#include "arch.hpp"
#include "pooling.hpp"
#include "quantize.hpp"

BPUQ_NAMESPACE_BEGIN
namespace simd {

/// Concat of [outer][slice] views; equals reference::concat.
template <class Arch = default_arch, class Round = RoundHalfAwayFromZero, class T>
inline void concat(const std::vector<ConcatInput<T>>& inputs, std::int64_t outer, std::int32_t zp_out, std::int32_t qmin,
                   std::int32_t qmax, T* output) {
    static_assert(is_activation_type<T>, "bpuq: concat takes int8 or int16");
    std::int64_t out_slice = 0;
    for (const auto& in : inputs) out_slice += in.slice;
    for (std::int64_t o = 0; o < outer; ++o) {
        T* dst = output + o * out_slice;
        for (const auto& in : inputs) {
            const T* src = in.data + o * in.slice;
            if (in.identity) std::memcpy(dst, src, static_cast<std::size_t>(in.slice) * sizeof(T));
            else requantize_span<Arch, Round>(src, dst, in.slice, in.zero_point, in.multiplier, zp_out, qmin, qmax);
            dst += in.slice;
        }
    }
}

/// Nearest-neighbour resize of NHWC; equals reference::resize_nearest (channel rows are copied).
template <class Arch = default_arch, class T>
inline void resize_nearest(const T* input, int batch, int in_h, int in_w, int c, const ResizeAxis& ys, const ResizeAxis& xs,
                           T* output) {
    static_assert(is_activation_type<T>, "bpuq: resize takes int8 or int16");
    reference::resize_nearest(input, batch, in_h, in_w, c, ys, xs, output);
}

/// Bilinear resize of NHWC (same parameters in and out); equals reference::resize_bilinear.
template <class Arch = default_arch, class Round = RoundHalfAwayFromZero, class T>
inline void resize_bilinear(const T* input, int batch, int in_h, int in_w, int c, std::int32_t zp, const ResizeAxis& ys,
                            const ResizeAxis& xs, T* output) {
    static_assert(is_activation_type<T>, "bpuq: resize takes int8 or int16");
#if BPUQ_SIMD_HAS_X86
    if constexpr (simd_level<Arch> != Level::scalar) {
        BPUQ_CHECK(batch > 0 && in_h > 0 && in_w > 0 && c > 0, "kernels.resize",
                   "resize needs a positive batch, input size and channel count");
        constexpr Level L = vector_level<Arch>;
        using Ops = detail::IntOps<L>;
        using I = xsimd::batch<std::int32_t, typename Ops::arch>;
        constexpr int W = Ops::lanes;
        // the 64-bit rounding shift of the requantization by 2·11 bits; the multiplier is unused
        QuantizedMultiplier by_weights;
        by_weights.multiplier = 1;
        by_weights.shift = 31 - 2 * kResizeWeightBits;
        const detail::RequantConstants<L> k(by_weights, 0, zp, std::numeric_limits<T>::min(), std::numeric_limits<T>::max());
        const std::int32_t one = std::int32_t(1) << kResizeWeightBits;
        const int oh = static_cast<int>(ys.i0.size()), ow = static_cast<int>(xs.i0.size());
        const I zpv(zp);
        for (int n = 0; n < batch; ++n)
            for (int y = 0; y < oh; ++y) {
                const T* row0 = input + (std::int64_t(n) * in_h + ys.i0[static_cast<std::size_t>(y)]) * in_w * c;
                const T* row1 = input + (std::int64_t(n) * in_h + ys.i1[static_cast<std::size_t>(y)]) * in_w * c;
                const std::int32_t wy1 = ys.w1[static_cast<std::size_t>(y)], wy0 = one - wy1;
                const typename Ops::reg wy0v = Ops::set32(wy0), wy1v = Ops::set32(wy1);
                for (int x = 0; x < ow; ++x) {
                    const std::int64_t c0 = std::int64_t(xs.i0[static_cast<std::size_t>(x)]) * c;
                    const std::int64_t c1 = std::int64_t(xs.i1[static_cast<std::size_t>(x)]) * c;
                    const std::int32_t wx1 = xs.w1[static_cast<std::size_t>(x)], wx0 = one - wx1;
                    const I wx0v(wx0), wx1v(wx1);
                    T* o = output + ((std::int64_t(n) * oh + y) * ow + x) * c;
                    int ch = 0;
                    for (; ch + W <= c; ch += W) {
                        const I h0 = wx0v * (I(Ops::load_widen(row0 + c0 + ch)) - zpv) + wx1v * (I(Ops::load_widen(row0 + c1 + ch)) - zpv);
                        const I h1 = wx0v * (I(Ops::load_widen(row1 + c0 + ch)) - zpv) + wx1v * (I(Ops::load_widen(row1 + c1 + ch)) - zpv);
                        const typename Ops::reg r0 = h0, r1 = h1;
                        const typename Ops::reg even = detail::round_shift_clamp64<Round, L>(
                            Ops::add64(Ops::mul_even_i32(r0, wy0v), Ops::mul_even_i32(r1, wy1v)), k);
                        const typename Ops::reg odd = detail::round_shift_clamp64<Round, L>(
                            Ops::add64(Ops::mul_even_i32(Ops::odd_to_even(r0), wy0v), Ops::mul_even_i32(Ops::odd_to_even(r1), wy1v)), k);
                        detail::store_lanes<L>(o + ch, Ops::add32(Ops::interleave_low32(even, odd), k.zp_out), W);
                    }
                    for (; ch < c; ++ch) {  // tail lanes: the reference's formula
                        const std::int64_t h0 = std::int64_t(wx0) * (row0[c0 + ch] - zp) + std::int64_t(wx1) * (row0[c1 + ch] - zp);
                        const std::int64_t h1 = std::int64_t(wx0) * (row1[c0 + ch] - zp) + std::int64_t(wx1) * (row1[c1 + ch] - zp);
                        o[ch] = static_cast<T>(rounding_shift_right<Round>(wy0 * h0 + wy1 * h1, 2 * kResizeWeightBits) + zp);
                    }
                }
            }
        return;
    }
#endif
    reference::resize_bilinear<Round>(input, batch, in_h, in_w, c, zp, ys, xs, output);
}

}  // namespace simd
BPUQ_NAMESPACE_END
