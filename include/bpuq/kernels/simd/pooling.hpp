// SIMD max / average / global-average pooling, elementwise add/sub/mul and the int8 and int16 lookup tables, bit-identical to reference::.
//
// All of them vectorize across the innermost (channel / element) axis and evaluate the
// reference's integer formulas lane by lane (docs/ARITHMETIC.md "Kernels: pooling,
// elementwise ..."): sums in int32 lanes where a bound proves they cannot overflow (the
// reference sums in int64; an exact int32 sum is the same number), the single-rounding
// requantization of quantize.hpp (requantize_lanes: 64-bit products, the policy's tie rule).
// Tails, unproven bounds and architectures without a vector path run the reference itself.
// tests/kernels/test_simd_pooling.cpp compares every kernel with the reference bit for bit.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <type_traits>
#include <vector>

#include "../reference/eltwise.hpp"
#include "../reference/lut.hpp"
#include "../reference/pooling.hpp"
#include "arch.hpp"
#include "quantize.hpp"

BPUQ_NAMESPACE_BEGIN
namespace simd {
namespace detail {

/// Valid kernel rows/columns of output position o along one axis: [k0, k1).
inline void pool_valid_range(int o, int stride, int pad, int kernel, int in, int& k0, int& k1) noexcept {
    const int start = o * stride - pad;
    k0 = std::max(0, -start);
    k1 = std::min(kernel, in - start);
}

#if BPUQ_SIMD_HAS_X86
/// Stores W int32 lanes (already within the output range) as TOut.
template <Level L, class TOut>
inline void store_lanes(TOut* out, typename IntOps<L>::reg v, int count) noexcept {
    alignas(64) std::int32_t tmp[IntOps<L>::lanes];
    using I = xsimd::batch<std::int32_t, typename IntOps<L>::arch>;
    I(v).store_aligned(tmp);
    for (int j = 0; j < count; ++j) out[j] = static_cast<TOut>(tmp[j]);
}
#endif

}  // namespace detail

/// Max pooling over NHWC; equals reference::max_pool2d.
template <class Arch = default_arch, class T>
inline void max_pool2d(const Pool2dGeometry& g, const T* input, T* output) {
    static_assert(is_activation_type<T>, "bpuq: max_pool2d takes int8 or int16");
#if BPUQ_SIMD_HAS_X86
    if constexpr (simd_level<Arch> != Level::scalar) {
        g.validate();
        using A = typename detail::IntOps<vector_level<Arch>>::arch;
        using Bt = xsimd::batch<T, A>;
        constexpr int W = static_cast<int>(Bt::size);
        const int oh = g.out_h(), ow = g.out_w(), C = g.channels;
        for (int n = 0; n < g.batch; ++n)
            for (int oy = 0; oy < oh; ++oy) {
                int ky0, ky1;
                detail::pool_valid_range(oy, g.stride_h, g.pad_top, g.kernel_h, g.in_h, ky0, ky1);
                for (int ox = 0; ox < ow; ++ox) {
                    int kx0, kx1;
                    detail::pool_valid_range(ox, g.stride_w, g.pad_left, g.kernel_w, g.in_w, kx0, kx1);
                    // offset of the (possibly padded) window origin; only valid taps are added to it
                    const std::int64_t base = ((std::int64_t(n) * g.in_h + (oy * g.stride_h - g.pad_top)) * g.in_w +
                                               (ox * g.stride_w - g.pad_left)) * C;
                    T* o = output + ((std::int64_t(n) * oh + oy) * ow + ox) * C;
                    int c = 0;
                    for (; c + W <= C; c += W) {
                        Bt best(std::numeric_limits<T>::min());
                        for (int ky = ky0; ky < ky1; ++ky)
                            for (int kx = kx0; kx < kx1; ++kx)
                                best = xsimd::max(best, Bt::load_unaligned(input + (base + (std::int64_t(ky) * g.in_w + kx) * C + c)));
                        best.store_unaligned(o + c);
                    }
                    for (; c < C; ++c) {
                        T best = std::numeric_limits<T>::min();
                        for (int ky = ky0; ky < ky1; ++ky)
                            for (int kx = kx0; kx < kx1; ++kx)
                                best = std::max(best, input[base + (std::int64_t(ky) * g.in_w + kx) * C + c]);
                        o[c] = best;
                    }
                }
            }
        return;
    }
#endif
    reference::max_pool2d(g, input, output);
}

/// Average pooling over NHWC; equals reference::avg_pool2d.
template <class Arch = default_arch, class Round = RoundHalfAwayFromZero, class TIn, class TOut>
inline void avg_pool2d(const Pool2dGeometry& g, const TIn* input, bool count_include_pad, const AverageRescale& r,
                       TOut* output) {
    static_assert(is_activation_type<TIn> && is_activation_type<TOut>, "bpuq: avg_pool2d maps int8/int16 to int8/int16");
#if BPUQ_SIMD_HAS_X86
    if constexpr (simd_level<Arch> != Level::scalar) {
        g.validate();
        const std::int64_t taps = std::int64_t(g.kernel_h) * g.kernel_w;
        const std::int64_t max_abs = std::max<std::int64_t>(std::abs(std::int64_t(std::numeric_limits<TIn>::min()) - r.zp_in),
                                                            std::abs(std::int64_t(std::numeric_limits<TIn>::max()) - r.zp_in));
        // raw sums and count * zp_in in int32 lanes: exact when both are bounded
        const bool fits = taps * (max_abs + std::abs(std::int64_t(r.zp_in))) <= std::numeric_limits<std::int32_t>::max();
        if (fits && r.per_count.size() > static_cast<std::size_t>(taps)) {
            constexpr Level L = vector_level<Arch>;
            using Ops = detail::IntOps<L>;
            constexpr int W = Ops::lanes;
            std::vector<detail::RequantConstants<L>> k;
            k.reserve(static_cast<std::size_t>(taps) + 1);
            for (std::int64_t c = 0; c <= taps; ++c)
                k.emplace_back(r.per_count[static_cast<std::size_t>(c)], static_cast<std::int32_t>(c * r.zp_in), r.zp_out,
                               r.lo, r.hi);
            const int oh = g.out_h(), ow = g.out_w(), C = g.channels;
            for (int n = 0; n < g.batch; ++n)
                for (int oy = 0; oy < oh; ++oy) {
                    int ky0, ky1;
                    detail::pool_valid_range(oy, g.stride_h, g.pad_top, g.kernel_h, g.in_h, ky0, ky1);
                    for (int ox = 0; ox < ow; ++ox) {
                        int kx0, kx1;
                        detail::pool_valid_range(ox, g.stride_w, g.pad_left, g.kernel_w, g.in_w, kx0, kx1);
                        const std::int64_t valid = std::int64_t(ky1 - ky0) * (kx1 - kx0);
                        std::int64_t count = valid;
                        if (count_include_pad) {  // as the reference: windows clipped by the input end are not padding
                            const int y0 = oy * g.stride_h - g.pad_top, x0 = ox * g.stride_w - g.pad_left;
                            const int y1 = std::min(y0 + g.kernel_h, g.in_h + g.pad_bottom);
                            const int x1 = std::min(x0 + g.kernel_w, g.in_w + g.pad_right);
                            count = std::int64_t(y1 - y0) * (x1 - x0);
                        }
                        // the sum covers `valid` raw values: subtract valid * zp_in (constants of `valid`
                        // hold that zero point) but rescale with the multiplier of `count`
                        detail::RequantConstants<L> kc = k[static_cast<std::size_t>(count)];
                        kc.zp_in = k[static_cast<std::size_t>(valid)].zp_in;
                        const std::int64_t base = ((std::int64_t(n) * g.in_h + (oy * g.stride_h - g.pad_top)) * g.in_w +
                                                   (ox * g.stride_w - g.pad_left)) * C;
                        TOut* o = output + ((std::int64_t(n) * oh + oy) * ow + ox) * C;
                        int c = 0;
                        for (; c + W <= C; c += W) {
                            typename Ops::reg sum = Ops::set32(0);
                            for (int ky = ky0; ky < ky1; ++ky)
                                for (int kx = kx0; kx < kx1; ++kx)
                                    sum = Ops::add32(sum, Ops::load_widen(input + (base + (std::int64_t(ky) * g.in_w + kx) * C + c)));
                            detail::store_lanes<L>(o + c, detail::requantize_lanes<Round, L>(sum, kc), W);
                        }
                        for (; c < C; ++c) {
                            std::int64_t s = 0;
                            for (int ky = ky0; ky < ky1; ++ky)
                                for (int kx = kx0; kx < kx1; ++kx) s += input[base + (std::int64_t(ky) * g.in_w + kx) * C + c] - r.zp_in;
                            o[c] = static_cast<TOut>(r.template apply<Round>(s, count));
                        }
                    }
                }
            return;
        }
    }
#endif
    reference::avg_pool2d<Round>(g, input, count_include_pad, r, output);
}

/// Mean over the middle axis of [outer][reduce][inner]; equals reference::reduce_mean.
template <class Arch = default_arch, class Round = RoundHalfAwayFromZero, class TIn, class TOut>
inline void reduce_mean(const TIn* input, std::int64_t outer, std::int64_t reduce, std::int64_t inner, const AverageRescale& r,
                        TOut* output) {
    static_assert(is_activation_type<TIn> && is_activation_type<TOut>, "bpuq: reduce_mean maps int8/int16 to int8/int16");
#if BPUQ_SIMD_HAS_X86
    if constexpr (simd_level<Arch> != Level::scalar) {
        const std::int64_t max_abs = std::max<std::int64_t>(-std::int64_t(std::numeric_limits<TIn>::min()),
                                                            std::numeric_limits<TIn>::max());
        const bool fits = reduce > 0 && reduce * (max_abs + std::abs(std::int64_t(r.zp_in))) <= std::numeric_limits<std::int32_t>::max();
        if (fits && outer > 0 && inner > 0 && static_cast<std::int64_t>(r.per_count.size()) > reduce) {
            constexpr Level L = vector_level<Arch>;
            using Ops = detail::IntOps<L>;
            constexpr int W = Ops::lanes;
            const detail::RequantConstants<L> k(r.per_count[static_cast<std::size_t>(reduce)],
                                                static_cast<std::int32_t>(reduce * r.zp_in), r.zp_out, r.lo, r.hi);
            for (std::int64_t o = 0; o < outer; ++o) {
                std::int64_t i = 0;
                for (; i + 4 * W <= inner; i += 4 * W) {  // four registers: the loads of one row are contiguous
                    typename Ops::reg s0 = Ops::set32(0), s1 = s0, s2 = s0, s3 = s0;
                    for (std::int64_t j = 0; j < reduce; ++j) {
                        const TIn* p = input + (o * reduce + j) * inner + i;
                        s0 = Ops::add32(s0, Ops::load_widen(p));
                        s1 = Ops::add32(s1, Ops::load_widen(p + W));
                        s2 = Ops::add32(s2, Ops::load_widen(p + 2 * W));
                        s3 = Ops::add32(s3, Ops::load_widen(p + 3 * W));
                    }
                    TOut* out = output + o * inner + i;
                    detail::store_lanes<L>(out, detail::requantize_lanes<Round, L>(s0, k), W);
                    detail::store_lanes<L>(out + W, detail::requantize_lanes<Round, L>(s1, k), W);
                    detail::store_lanes<L>(out + 2 * W, detail::requantize_lanes<Round, L>(s2, k), W);
                    detail::store_lanes<L>(out + 3 * W, detail::requantize_lanes<Round, L>(s3, k), W);
                }
                for (; i + W <= inner; i += W) {
                    typename Ops::reg s = Ops::set32(0);
                    for (std::int64_t j = 0; j < reduce; ++j) s = Ops::add32(s, Ops::load_widen(input + (o * reduce + j) * inner + i));
                    detail::store_lanes<L>(output + o * inner + i, detail::requantize_lanes<Round, L>(s, k), W);
                }
                for (; i < inner; ++i) {
                    std::int64_t s = 0;
                    for (std::int64_t j = 0; j < reduce; ++j) s += input[(o * reduce + j) * inner + i] - r.zp_in;
                    output[o * inner + i] = static_cast<TOut>(r.template apply<Round>(s, reduce));
                }
            }
            return;
        }
    }
#endif
    reference::reduce_mean<Round>(input, outer, reduce, inner, r, output);
}

/// GlobalAveragePool over NHWC: [N][H][W][C] -> [N][C]; equals reference::global_avg_pool.
template <class Arch = default_arch, class Round = RoundHalfAwayFromZero, class TIn, class TOut>
inline void global_avg_pool(const TIn* input, int batch, int h, int w, int c, const AverageRescale& r, TOut* output) {
    reduce_mean<Arch, Round>(input, batch, std::int64_t(h) * w, c, r, output);
}

/// out[i] = a[i] (op) b[i], or b broadcast along the innermost axis (b_count divides n);
/// equals reference::eltwise.
template <class Arch = default_arch, class Round = RoundHalfAwayFromZero, class TA, class TB, class TOut>
inline void eltwise(const TA* a, const TB* b, std::int64_t n, std::int64_t b_count, const EltwiseParams& p, TOut* out) {
    static_assert(is_activation_type<TA> && is_activation_type<TB> && is_activation_type<TOut>,
                  "bpuq: eltwise maps int8/int16 operands to int8/int16");
#if BPUQ_SIMD_HAS_X86
    if constexpr (simd_level<Arch> != Level::scalar) {
        BPUQ_CHECK(b_count > 0 && n % b_count == 0, "kernels.eltwise",
                   "operand b with " + std::to_string(b_count) + " elements cannot broadcast onto " + std::to_string(n));
        auto max_abs = [](auto lo, auto hi, std::int32_t zp) {
            return std::max(std::abs(std::int64_t(lo) - zp), std::abs(std::int64_t(hi) - zp));
        };
        const std::int64_t ma = max_abs(std::numeric_limits<TA>::min(), std::numeric_limits<TA>::max(), p.zp_a);
        const std::int64_t mb = max_abs(std::numeric_limits<TB>::min(), std::numeric_limits<TB>::max(), p.zp_b);
        constexpr std::int64_t kMax = std::numeric_limits<std::int32_t>::max();
        // every intermediate of the reference must fit int32 lanes: (q - zp) << L (add/sub), whose
        // rescaled values are at most half of it, or the product (mul)
        bool fits = p.op == EltwiseOp::mul ? ma * mb <= kMax : p.left_shift >= 0 && p.left_shift < 31;
        if (fits && p.op != EltwiseOp::mul) {
            const std::int64_t xa = ma << p.left_shift, xb = mb << p.left_shift;
            const double bound = double(xa) * dequantize_multiplier(p.mult_a) + double(xb) * dequantize_multiplier(p.mult_b) + 2.0;
            fits = xa <= kMax && xb <= kMax && bound <= double(kMax);
        }
        if (fits) {
            constexpr Level L = vector_level<Arch>;
            using Ops = detail::IntOps<L>;
            using I = xsimd::batch<std::int32_t, typename Ops::arch>;
            constexpr int W = Ops::lanes;
            constexpr std::int32_t kMin32 = std::numeric_limits<std::int32_t>::min(), kMax32 = std::numeric_limits<std::int32_t>::max();
            const detail::RequantConstants<L> ka(p.mult_a, 0, 0, kMin32, kMax32), kb(p.mult_b, 0, 0, kMin32, kMax32);
            const detail::RequantConstants<L> ko(p.mult_out, 0, p.zp_out, p.lo, p.hi);
            const I zpa(p.zp_a), zpb(p.zp_b);
            auto lanes = [&](typename Ops::reg qa, typename Ops::reg qb) -> typename Ops::reg {
                const I x = I(qa) - zpa, y = I(qb) - zpb;
                if (p.op == EltwiseOp::mul) return detail::requantize_lanes<Round, L>(x * y, ko);
                const I sa(detail::requantize_lanes<Round, L>(x << p.left_shift, ka));
                const I sb(detail::requantize_lanes<Round, L>(y << p.left_shift, kb));
                return detail::requantize_lanes<Round, L>(p.op == EltwiseOp::add ? sa + sb : sa - sb, ko);
            };
            // a per-channel b with few channels (an image's mean or scale) is repeated into a row
            // of at least 256 elements, so that whole vectors of a line up with it
            std::vector<TB> repeated;
            const TB* bv = b;
            std::int64_t row = b_count == 1 ? n : b_count;  // a scalar b is broadcast as a register
            if (b_count > 1 && b_count < n && b_count < 4 * W) {
                const std::int64_t copies = std::min<std::int64_t>(n / b_count, (256 + b_count - 1) / b_count);
                repeated.resize(static_cast<std::size_t>(copies * b_count));
                for (std::size_t i = 0; i < repeated.size(); ++i) repeated[i] = b[i % static_cast<std::size_t>(b_count)];
                bv = repeated.data();
                row = copies * b_count;
            }
            for (std::int64_t s = 0; s < n; s += row) {
                const std::int64_t row_end = std::min(row, n - s);
                std::int64_t j = 0;
                for (; j + 4 * W <= row_end; j += 4 * W) {
                    typename Ops::reg v[4];
                    for (int h = 0; h < 4; ++h) {
                        const typename Ops::reg qb = b_count == 1 ? Ops::set32(b[0]) : Ops::load_widen(bv + (b_count == n ? s + j : j) + h * W);
                        v[h] = lanes(Ops::load_widen(a + s + j + h * W), qb);
                    }
                    detail::store_block<L>(out + s + j, v[0], v[1], v[2], v[3]);
                }
                for (; j < row_end; ++j) {
                    const std::int64_t i = s + j;
                    out[i] = static_cast<TOut>(p.template apply<Round>(a[i], b[b_count == n ? i : i % b_count]));
                }
            }
            return;
        }
    }
#endif
    reference::eltwise<Round>(a, b, n, b_count, p, out);
}

/// int8 -> int8 lookup table; equals reference::apply_lut. AVX-512 VBMI: two two-table byte
/// permutes (128 entries each) and a blend on the index's top bit, 64 elements per step.
template <class Arch = default_arch, class TOut>
inline void apply_lut(const std::int8_t* in, std::int64_t n, const LutInt8<TOut>& lut, TOut* out) noexcept {
    std::int64_t i = 0;
#if BPUQ_SIMD_HAS_AVX512_VNNI && defined(__AVX512VBMI__)
    if constexpr (simd_level<Arch> == Level::avx512_vnni && sizeof(TOut) == 1) {
        const __m512i t0 = _mm512_loadu_si512(lut.table.data()), t1 = _mm512_loadu_si512(lut.table.data() + 64);
        const __m512i t2 = _mm512_loadu_si512(lut.table.data() + 128), t3 = _mm512_loadu_si512(lut.table.data() + 192);
        const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
        for (; i + 64 <= n; i += 64) {
            const __m512i u = _mm512_xor_si512(_mm512_loadu_si512(in + i), flip);  // q + 128
            const __m512i lo = _mm512_permutex2var_epi8(t0, u, t1), hi = _mm512_permutex2var_epi8(t2, u, t3);
            _mm512_storeu_si512(out + i, _mm512_mask_blend_epi8(_mm512_movepi8_mask(u), lo, hi));
        }
    }
#endif
    reference::apply_lut(in + i, n - i, lut, out + i);
}

/// int16 -> int16/int8 interpolated table; equals reference::apply_lut (LutInt16). Gathers
/// T[i] and T[i + 1] (AVX2 / AVX-512 `vpgatherdd`) and interpolates in int32 lanes, which is
/// exact when every step |T[i+1] − T[i]| · 127 + 64 fits int32 (checked per call; tables of
/// functions that leave the output range by far run the reference's int64 formula).
template <class Arch = default_arch, class Round = RoundHalfAwayFromZero, class TOut>
inline void apply_lut(const std::int16_t* in, std::int64_t n, const LutInt16<TOut>& lut, TOut* out) noexcept {
    std::int64_t i = 0;
#if BPUQ_SIMD_HAS_X86
    if constexpr (simd_level<Arch> == Level::avx2 || simd_level<Arch> == Level::avx512_vnni) {
        constexpr Level L = vector_level<Arch>;
        using Ops = detail::IntOps<L>;
        using I = xsimd::batch<std::int32_t, typename Ops::arch>;
        constexpr int W = Ops::lanes;
        std::int64_t max_step = 0;
        for (std::size_t k = 0; k + 1 < lut.table.size(); ++k)
            max_step = std::max<std::int64_t>(max_step, std::abs(std::int64_t(lut.table[k + 1]) - lut.table[k]));
        std::int64_t max_abs = 0;
        for (auto t : lut.table) max_abs = std::max<std::int64_t>(max_abs, std::abs(std::int64_t(t)));
        const bool fits = lut.table.size() == 513 && max_step * 127 + 64 < (std::int64_t(1) << 31) &&
                          max_abs + max_step < (std::int64_t(1) << 31);
        if (fits) {
            const std::int32_t* table = lut.table.data();
            const I offset(32768), mask(127), half(64), one(1), lo(lut.qmin), hi(lut.qmax);
            for (; i + W <= n; i += W) {
                const I u = I(Ops::load_widen(in + i)) + offset;
                const I idx = u >> 7, r = u & mask;
                I a, b;
                if constexpr (L == Level::avx512_vnni) {
                    a = I(_mm512_i32gather_epi32(idx, table, 4));
                    b = I(_mm512_i32gather_epi32(idx, table + 1, 4));
                } else {
                    a = I(_mm256_i32gather_epi32(reinterpret_cast<const int*>(table), idx, 4));
                    b = I(_mm256_i32gather_epi32(reinterpret_cast<const int*>(table + 1), idx, 4));
                }
                const I p = (b - a) * r;
                I biased;
                if constexpr (std::is_same<Round, RoundHalfToEven>::value) biased = p + (half - one) + ((p >> 7) & one);
                else biased = p + half - ((p >> 31) & one);  // - [p < 0]
                const I v = xsimd::min(xsimd::max(a + (biased >> 7), lo), hi);
                detail::store_lanes<L>(out + i, v, W);
            }
        }
    }
#endif
    reference::apply_lut<Round>(in + i, n - i, lut, out + i);
}

}  // namespace simd
BPUQ_NAMESPACE_END
