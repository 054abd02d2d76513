// Vectorized quantize / dequantize / requantize of spans and tensors, bit-identical to reference::.
//
// Normative forms (include/bpuq/quant/quantize.hpp, docs/ARITHMETIC.md):
//   quantize    q = clamp(round(x / scale) + zp, qmin, qmax), NaN -> zp, true float division,
//               round = trunc + a correction from the exact fraction (round_float)
//   dequantize  x = float(q - zp) * scale
//   requantize  q' = clamp(zp' + round((q - zp) * m0 / 2^(31 - shift)), qmin, qmax), one rounding
// Each vector lane evaluates exactly these operations in the same order, so the results equal
// the scalar reference for every input (tests/kernels/test_simd_quantize.cpp checks lane by
// lane). Tails shorter than one block run the scalar reference itself.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../../quant/quantize.hpp"
#include "arch.hpp"

BPUQ_NAMESPACE_BEGIN
namespace simd {
namespace detail {

#if BPUQ_SIMD_HAS_X86
// ---- per-ISA integer plumbing that xsimd 8 does not offer: widening loads, narrowing stores
// (with static_cast's wrap-around semantics, so even an out-of-range zero point stored for a
// NaN lane matches the reference), float mask -> int mask, and 64-bit fixed-point steps. ----

template <Level L>
struct IntOps;  // primary template intentionally undefined: only SIMD levels have one

#if BPUQ_SIMD_HAS_AVX2
template <>
struct IntOps<Level::avx2> {
    using arch = xsimd::avx2;
    using reg = __m256i;
    static constexpr int lanes = 8;

    static reg load_widen(const std::int8_t* p) noexcept {
        return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    }
    static reg load_widen(const std::int16_t* p) noexcept {
        return _mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    // four int32 registers -> 32 int8 (low bytes; masking first makes packus exact)
    static void store_narrow4(std::int8_t* p, reg a, reg b, reg c, reg d) noexcept {
        const reg m = _mm256_set1_epi32(0xff);
        const reg ab = _mm256_packus_epi32(_mm256_and_si256(a, m), _mm256_and_si256(b, m));
        const reg cd = _mm256_packus_epi32(_mm256_and_si256(c, m), _mm256_and_si256(d, m));
        const reg bytes = _mm256_packus_epi16(ab, cd);  // dwords: a0 b0 c0 d0 a1 b1 c1 d1
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p),
                            _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    }
    // two int32 registers -> 16 int16 (low halves)
    static void store_narrow2(std::int16_t* p, reg a, reg b) noexcept {
        const reg m = _mm256_set1_epi32(0xffff);
        const reg ab = _mm256_packus_epi32(_mm256_and_si256(a, m), _mm256_and_si256(b, m));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_permute4x64_epi64(ab, 0xd8));
    }
    static reg float_mask_to_int(__m256 m) noexcept { return _mm256_castps_si256(m); }
    static reg blend(reg a, reg b, reg mask) noexcept { return _mm256_blendv_epi8(a, b, mask); }
    // int64 lanes
    static reg mul_even_i32(reg a, reg b) noexcept { return _mm256_mul_epi32(a, b); }
    static reg odd_to_even(reg a) noexcept { return _mm256_srli_epi64(a, 32); }
    static reg add64(reg a, reg b) noexcept { return _mm256_add_epi64(a, b); }
    static reg sub64(reg a, reg b) noexcept { return _mm256_sub_epi64(a, b); }
    static reg srl64(reg a, __m128i count) noexcept { return _mm256_srl_epi64(a, count); }
    static reg and_(reg a, reg b) noexcept { return _mm256_and_si256(a, b); }
    static reg set64(std::int64_t v) noexcept { return _mm256_set1_epi64x(v); }
    static reg set32(std::int32_t v) noexcept { return _mm256_set1_epi32(v); }
    static reg add32(reg a, reg b) noexcept { return _mm256_add_epi32(a, b); }
    static reg sub32(reg a, reg b) noexcept { return _mm256_sub_epi32(a, b); }
    static reg negative64(reg a) noexcept { return _mm256_cmpgt_epi64(_mm256_setzero_si256(), a); }
    static reg greater64(reg a, reg b) noexcept { return _mm256_cmpgt_epi64(a, b); }
    // low dwords of the even-lane and odd-lane int64 results back into 8 int32 lanes
    static reg interleave_low32(reg even, reg odd) noexcept {
        return _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xaa);
    }
};
#endif

#if BPUQ_SIMD_HAS_AVX512_VNNI
// AVX-512: masks are k-registers; the two blend overloads tell 32-bit from 64-bit lanes by the
// mask type (__mmask16 vs __mmask8). Narrowing uses the truncating vpmovdb / vpmovdw.
template <>
struct IntOps<Level::avx512_vnni> {
    using arch = xsimd::avx512bw;
    using reg = __m512i;
    static constexpr int lanes = 16;

    static reg load_widen(const std::int8_t* p) noexcept {
        return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    static reg load_widen(const std::int16_t* p) noexcept {
        return _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    static void store_narrow4(std::int8_t* p, reg a, reg b, reg c, reg d) noexcept {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(a));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 16), _mm512_cvtepi32_epi8(b));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 32), _mm512_cvtepi32_epi8(c));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p + 48), _mm512_cvtepi32_epi8(d));
    }
    static void store_narrow2(std::int16_t* p, reg a, reg b) noexcept {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(a));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 16), _mm512_cvtepi32_epi16(b));
    }
    static __mmask16 float_mask_to_int(__mmask16 m) noexcept { return m; }
    static reg blend(reg a, reg b, __mmask16 mask) noexcept { return _mm512_mask_blend_epi32(mask, a, b); }
    static reg blend(reg a, reg b, __mmask8 mask) noexcept { return _mm512_mask_blend_epi64(mask, a, b); }
    static reg mul_even_i32(reg a, reg b) noexcept { return _mm512_mul_epi32(a, b); }
    static reg odd_to_even(reg a) noexcept { return _mm512_srli_epi64(a, 32); }
    static reg add64(reg a, reg b) noexcept { return _mm512_add_epi64(a, b); }
    static reg sub64(reg a, reg b) noexcept { return _mm512_sub_epi64(a, b); }
    static reg srl64(reg a, __m128i count) noexcept { return _mm512_srl_epi64(a, count); }
    static reg and_(reg a, reg b) noexcept { return _mm512_and_si512(a, b); }
    static reg set64(std::int64_t v) noexcept { return _mm512_set1_epi64(v); }
    static reg set32(std::int32_t v) noexcept { return _mm512_set1_epi32(v); }
    static reg add32(reg a, reg b) noexcept { return _mm512_add_epi32(a, b); }
    static reg sub32(reg a, reg b) noexcept { return _mm512_sub_epi32(a, b); }
    static reg negative64(reg a) noexcept { return _mm512_srai_epi64(a, 63); }
    static __mmask8 greater64(reg a, reg b) noexcept { return _mm512_cmpgt_epi64_mask(a, b); }
    static reg interleave_low32(reg even, reg odd) noexcept {
        return _mm512_mask_blend_epi32(0xaaaa, even, _mm512_slli_epi64(odd, 32));
    }
};
#endif

#if BPUQ_SIMD_HAS_SSE4_1
template <>
struct IntOps<Level::sse4_1> {
    using arch = xsimd::sse4_1;
    using reg = __m128i;
    static constexpr int lanes = 4;

    static reg load_widen(const std::int8_t* p) noexcept {
        std::int32_t four;
        std::memcpy(&four, p, 4);
        return _mm_cvtepi8_epi32(_mm_cvtsi32_si128(four));
    }
    static reg load_widen(const std::int16_t* p) noexcept {
        return _mm_cvtepi16_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    }
    static void store_narrow4(std::int8_t* p, reg a, reg b, reg c, reg d) noexcept {
        const reg m = _mm_set1_epi32(0xff);
        const reg ab = _mm_packus_epi32(_mm_and_si128(a, m), _mm_and_si128(b, m));
        const reg cd = _mm_packus_epi32(_mm_and_si128(c, m), _mm_and_si128(d, m));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(ab, cd));
    }
    static void store_narrow2(std::int16_t* p, reg a, reg b) noexcept {
        const reg m = _mm_set1_epi32(0xffff);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm_packus_epi32(_mm_and_si128(a, m), _mm_and_si128(b, m)));
    }
    static reg float_mask_to_int(__m128 m) noexcept { return _mm_castps_si128(m); }
    static reg blend(reg a, reg b, reg mask) noexcept { return _mm_blendv_epi8(a, b, mask); }
    static reg mul_even_i32(reg a, reg b) noexcept { return _mm_mul_epi32(a, b); }
    static reg odd_to_even(reg a) noexcept { return _mm_srli_epi64(a, 32); }
    static reg add64(reg a, reg b) noexcept { return _mm_add_epi64(a, b); }
    static reg sub64(reg a, reg b) noexcept { return _mm_sub_epi64(a, b); }
    static reg srl64(reg a, __m128i count) noexcept { return _mm_srl_epi64(a, count); }
    static reg and_(reg a, reg b) noexcept { return _mm_and_si128(a, b); }
    static reg set64(std::int64_t v) noexcept { return _mm_set1_epi64x(v); }
    static reg set32(std::int32_t v) noexcept { return _mm_set1_epi32(v); }
    static reg add32(reg a, reg b) noexcept { return _mm_add_epi32(a, b); }
    static reg sub32(reg a, reg b) noexcept { return _mm_sub_epi32(a, b); }
    // SSE4.1 has no 64-bit compare: the sign of the high dword, copied to both halves
    static reg negative64(reg a) noexcept { return _mm_shuffle_epi32(_mm_srai_epi32(a, 31), _MM_SHUFFLE(3, 3, 1, 1)); }
    // a > b  <=>  b - a < 0; exact because every operand here is below 2^62 in magnitude
    static reg greater64(reg a, reg b) noexcept { return negative64(_mm_sub_epi64(b, a)); }
    static reg interleave_low32(reg even, reg odd) noexcept {
        return _mm_blend_epi16(even, _mm_slli_epi64(odd, 32), 0xcc);
    }
};
#endif

/// round_float<Round> on every lane: trunc + correction from the exact fraction.
template <class Round, class A>
inline xsimd::batch<float, A> round_batch(const xsimd::batch<float, A>& v) noexcept {
    using B = xsimd::batch<float, A>;
    const B t = xsimd::trunc(v);
    const B afrac = xsimd::abs(v - t);  // exact for every float; NaN for +-Inf (then t is kept)
    const B stepped = t + xsimd::select(v < B(0.0f), B(-1.0f), B(1.0f));
    if (std::is_same<Round, RoundHalfToEven>::value) {
        // t is odd <=> t - 2 trunc(t / 2) != 0 (all three steps exact; floats >= 2^24 are even)
        const auto odd = (t - B(2.0f) * xsimd::trunc(t * B(0.5f))) != B(0.0f);
        return xsimd::select((afrac > B(0.5f)) | ((afrac == B(0.5f)) & odd), stepped, t);
    } else {
        return xsimd::select(afrac >= B(0.5f), stepped, t);
    }
}

/// quantize_value on every lane, before narrowing: int32 lanes in [qmin, qmax], NaN -> zp.
template <class Round, Level L>
inline typename IntOps<L>::reg quantize_lanes(const float* in, const xsimd::batch<float, typename IntOps<L>::arch>& scale,
                                              const xsimd::batch<float, typename IntOps<L>::arch>& lo,
                                              const xsimd::batch<float, typename IntOps<L>::arch>& hi,
                                              typename IntOps<L>::reg zp) noexcept {
    using Ops = IntOps<L>;
    using B = xsimd::batch<float, typename Ops::arch>;
    using I = xsimd::batch<std::int32_t, typename Ops::arch>;
    B v = B::load_unaligned(in) / scale;
    const auto nan_mask = Ops::float_mask_to_int(xsimd::isnan(v));
    v = round_batch<Round>(v);
    v = xsimd::min(xsimd::max(v, lo), hi);
    const typename Ops::reg q = Ops::add32(I(xsimd::batch_cast<std::int32_t>(v)), zp);
    return Ops::blend(q, zp, nan_mask);
}

/// Precomputed constants of one requantization (multiplier, shift, rounding bias, bounds).
template <Level L>
struct RequantConstants {
    using Ops = IntOps<L>;
    typename Ops::reg multiplier, offset_bias, unoffset, low, high, zp_in, zp_out, one;
    __m128i shift;
    RequantConstants(const QuantizedMultiplier& qm, std::int32_t zp_in_, std::int32_t zp_out_, std::int32_t qmin,
                     std::int32_t qmax) noexcept {
        const int t = qm.total_right_shift();
        multiplier = Ops::set64(qm.multiplier);
        // 2^62 keeps the biased product non-negative, so a logical shift equals the arithmetic
        // one: (p + bias + 2^62) >> t == floor((p + bias) / 2^t) + 2^(62 - t).
        offset_bias = Ops::set64((std::int64_t(1) << 62) + (std::int64_t(1) << (t - 1)));
        unoffset = Ops::set64(std::int64_t(1) << (62 - t));
        low = Ops::set64(std::int64_t(qmin) - zp_out_);
        high = Ops::set64(std::int64_t(qmax) - zp_out_);
        zp_in = Ops::set32(zp_in_);
        zp_out = Ops::set32(zp_out_);
        one = Ops::set64(1);
        shift = _mm_cvtsi32_si128(t);
    }
};

/// rounding_shift_right<Round>(p, t), clamped to [qmin - zp, qmax - zp], on int64 lanes.
template <class Round, Level L>
inline typename IntOps<L>::reg round_shift_clamp64(typename IntOps<L>::reg p, const RequantConstants<L>& k) noexcept {
    using Ops = IntOps<L>;
    typename Ops::reg biased = Ops::add64(p, k.offset_bias);
    if (std::is_same<Round, RoundHalfToEven>::value) {
        // bias = 2^(t-1) - 1 + bit t of p
        biased = Ops::add64(Ops::sub64(biased, k.one), Ops::and_(Ops::srl64(p, k.shift), k.one));
    } else {
        biased = Ops::add64(biased, Ops::negative64(p));  // - [p < 0]
    }
    typename Ops::reg r = Ops::sub64(Ops::srl64(biased, k.shift), k.unoffset);
    r = Ops::blend(r, k.low, Ops::greater64(k.low, r));
    r = Ops::blend(r, k.high, Ops::greater64(r, k.high));
    return r;
}

/// requantize_value on every int32 lane x = q - zp_in: the result in [qmin, qmax].
template <class Round, Level L>
inline typename IntOps<L>::reg requantize_lanes(typename IntOps<L>::reg q, const RequantConstants<L>& k) noexcept {
    using Ops = IntOps<L>;
    const typename Ops::reg x = Ops::sub32(q, k.zp_in);
    const typename Ops::reg even = round_shift_clamp64<Round, L>(Ops::mul_even_i32(x, k.multiplier), k);
    const typename Ops::reg odd = round_shift_clamp64<Round, L>(Ops::mul_even_i32(Ops::odd_to_even(x), k.multiplier), k);
    return Ops::add32(Ops::interleave_low32(even, odd), k.zp_out);
}

template <Level L, class Q>
inline void store_block(Q* out, typename IntOps<L>::reg a, typename IntOps<L>::reg b, typename IntOps<L>::reg c,
                        typename IntOps<L>::reg d) noexcept {
    using Ops = IntOps<L>;
    if constexpr (std::is_same<Q, std::int8_t>::value) {
        Ops::store_narrow4(out, a, b, c, d);
    } else {
        Ops::store_narrow2(out, a, b);
        Ops::store_narrow2(out + 2 * Ops::lanes, c, d);
    }
}

#endif  // BPUQ_SIMD_HAS_X86

template <class Q>
constexpr bool is_narrow_storage = std::is_same<Q, std::int8_t>::value || std::is_same<Q, std::int16_t>::value;

}  // namespace detail

/// Quantize a contiguous span (int8 or int16 output); equals reference::quantize_span bit for bit.
template <class Arch = default_arch, class RoundingPolicy = RoundHalfAwayFromZero, class Q>
inline void quantize_span(const float* in, Q* out, std::int64_t n, float scale, std::int32_t zp, std::int32_t qmin,
                          std::int32_t qmax) noexcept {
    static_assert(detail::is_narrow_storage<Q>, "bpuq: quantize_span writes int8 or int16");
    std::int64_t i = 0;
#if BPUQ_SIMD_HAS_X86
    if constexpr (simd_level<Arch> != Level::scalar) {
        constexpr Level L = vector_level<Arch>;
        using Ops = detail::IntOps<L>;
        using B = xsimd::batch<float, typename Ops::arch>;
        constexpr int W = Ops::lanes;
        const B vscale(scale), lo(static_cast<float>(qmin - zp)), hi(static_cast<float>(qmax - zp));
        const typename Ops::reg vzp = Ops::set32(zp);
        for (; i + 4 * W <= n; i += 4 * W) {
            const auto a = detail::quantize_lanes<RoundingPolicy, L>(in + i, vscale, lo, hi, vzp);
            const auto b = detail::quantize_lanes<RoundingPolicy, L>(in + i + W, vscale, lo, hi, vzp);
            const auto c = detail::quantize_lanes<RoundingPolicy, L>(in + i + 2 * W, vscale, lo, hi, vzp);
            const auto d = detail::quantize_lanes<RoundingPolicy, L>(in + i + 3 * W, vscale, lo, hi, vzp);
            detail::store_block<L>(out + i, a, b, c, d);
        }
    }
#endif
    reference::quantize_span<RoundingPolicy>(in + i, out + i, n - i, scale, zp, qmin, qmax);
}

/// Dequantize a contiguous int8/int16 span; equals reference::dequantize_span bit for bit.
template <class Arch = default_arch, class Q>
inline void dequantize_span(const Q* in, float* out, std::int64_t n, float scale, std::int32_t zp) noexcept {
    static_assert(detail::is_narrow_storage<Q>, "bpuq: dequantize_span reads int8 or int16");
    std::int64_t i = 0;
#if BPUQ_SIMD_HAS_X86
    if constexpr (simd_level<Arch> != Level::scalar) {
        constexpr Level L = vector_level<Arch>;
        using Ops = detail::IntOps<L>;
        using B = xsimd::batch<float, typename Ops::arch>;
        using I = xsimd::batch<std::int32_t, typename Ops::arch>;
        constexpr int W = Ops::lanes;
        const B vscale(scale);
        const typename Ops::reg vzp = Ops::set32(zp);
        for (; i + 2 * W <= n; i += 2 * W) {
            // |q - zp| < 2^24, so the int -> float conversion is exact, as in the scalar form
            const I a(Ops::sub32(Ops::load_widen(in + i), vzp));
            const I b(Ops::sub32(Ops::load_widen(in + i + W), vzp));
            (xsimd::batch_cast<float>(a) * vscale).store_unaligned(out + i);
            (xsimd::batch_cast<float>(b) * vscale).store_unaligned(out + i + W);
        }
    }
#endif
    reference::dequantize_span(in + i, out + i, n - i, scale, zp);
}

/// Requantize a contiguous span between int8/int16 types with one multiplier (single rounding);
/// equals reference::requantize_span bit for bit.
template <class Arch = default_arch, class RoundingPolicy = RoundHalfAwayFromZero, class QIn, class QOut>
inline void requantize_span(const QIn* in, QOut* out, std::int64_t n, std::int32_t zp_in, const QuantizedMultiplier& qm,
                            std::int32_t zp_out, std::int32_t qmin, std::int32_t qmax) noexcept {
    static_assert(detail::is_narrow_storage<QIn> && detail::is_narrow_storage<QOut>,
                  "bpuq: requantize_span maps int8/int16 to int8/int16");
    std::int64_t i = 0;
#if BPUQ_SIMD_HAS_X86
    if constexpr (simd_level<Arch> != Level::scalar) {
        constexpr Level L = vector_level<Arch>;
        using Ops = detail::IntOps<L>;
        constexpr int W = Ops::lanes;
        const detail::RequantConstants<L> k(qm, zp_in, zp_out, qmin, qmax);
        for (; i + 4 * W <= n; i += 4 * W) {
            const auto a = detail::requantize_lanes<RoundingPolicy, L>(Ops::load_widen(in + i), k);
            const auto b = detail::requantize_lanes<RoundingPolicy, L>(Ops::load_widen(in + i + W), k);
            const auto c = detail::requantize_lanes<RoundingPolicy, L>(Ops::load_widen(in + i + 2 * W), k);
            const auto d = detail::requantize_lanes<RoundingPolicy, L>(Ops::load_widen(in + i + 3 * W), k);
            detail::store_block<L>(out + i, a, b, c, d);
        }
    }
#endif
    reference::requantize_span<RoundingPolicy>(in + i, out + i, n - i, zp_in, qm, zp_out, qmin, qmax);
}

// ---- tensor-level wrappers: the same checks and channel runs as the scalar quantize_tensor ----

/// Quantize a float32 tensor into an int8/int16 tensor of the same element count.
template <class Arch = default_arch, class RoundingPolicy = RoundHalfAwayFromZero>
inline void quantize_tensor(const Tensor& in, Tensor& out, const QParams& p) {
    bpuq::detail::check_same_count(in, out, "quantize");
    bpuq::detail::check_storage(p, out.dtype(), "quantize");
    BPUQ_CHECK(in.dtype() == DType::float32, "tensor.dtype",
               std::string("quantize: the input must be float32, got ") + dtype_name(in.dtype()));
    const float* src = in.data<float>();
    for_each_channel_run(in.shape(), p.axis, p.channels(), [&](std::size_t c, std::int64_t off, std::int64_t len) {
        if (p.bits == 8)
            quantize_span<Arch, RoundingPolicy>(src + off, out.data<std::int8_t>() + off, len, p.scale[c],
                                                p.zero_point[c], p.qmin(), p.qmax());
        else
            quantize_span<Arch, RoundingPolicy>(src + off, out.data<std::int16_t>() + off, len, p.scale[c],
                                                p.zero_point[c], p.qmin(), p.qmax());
    });
}

template <class Arch = default_arch, class RoundingPolicy = RoundHalfAwayFromZero>
inline Tensor quantize_tensor(const Tensor& in, const QParams& p) {
    Tensor out(p.bits == 16 ? DType::int16 : DType::int8, in.shape());
    quantize_tensor<Arch, RoundingPolicy>(in, out, p);
    return out;
}

/// Dequantize an int8/int16 tensor to float32.
template <class Arch = default_arch>
inline Tensor dequantize_tensor(const Tensor& in, const QParams& p) {
    bpuq::detail::check_storage(p, in.dtype(), "dequantize");
    Tensor out(DType::float32, in.shape());
    float* dst = out.data<float>();
    for_each_channel_run(in.shape(), p.axis, p.channels(), [&](std::size_t c, std::int64_t off, std::int64_t len) {
        if (p.bits == 8)
            dequantize_span<Arch>(in.data<std::int8_t>() + off, dst + off, len, p.scale[c], p.zero_point[c]);
        else
            dequantize_span<Arch>(in.data<std::int16_t>() + off, dst + off, len, p.scale[c], p.zero_point[c]);
    });
    return out;
}

/// Requantize from parameters `from` (per-tensor or per-channel) to per-tensor `to`.
template <class Arch = default_arch, class RoundingPolicy = RoundHalfAwayFromZero>
inline Tensor requantize_tensor(const Tensor& in, const QParams& from, const QParams& to) {
    bpuq::detail::check_storage(from, in.dtype(), "requantize");
    BPUQ_CHECK(!to.per_channel(), "qparams.axis", "requantize: the target parameters must be per-tensor");
    Tensor out(to.bits == 16 ? DType::int16 : DType::int8, in.shape());
    for_each_channel_run(in.shape(), from.axis, from.channels(), [&](std::size_t c, std::int64_t off, std::int64_t len) {
        const QuantizedMultiplier qm = rescale_multiplier(from.scale[c], to.scale[0]);
        auto run = [&](const auto* src) {
            if (to.bits == 8)
                requantize_span<Arch, RoundingPolicy>(src + off, out.data<std::int8_t>() + off, len, from.zero_point[c],
                                                      qm, to.zero_point[0], to.qmin(), to.qmax());
            else
                requantize_span<Arch, RoundingPolicy>(src + off, out.data<std::int16_t>() + off, len,
                                                      from.zero_point[c], qm, to.zero_point[0], to.qmin(), to.qmax());
        };
        if (from.bits == 8) run(in.data<std::int8_t>());
        else run(in.data<std::int16_t>());
    });
    return out;
}

}  // namespace simd
BPUQ_NAMESPACE_END
