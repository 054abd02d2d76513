// SIMD convolution and GEMM: weights packed once, register-blocked micro-kernels, threads.
//
// Terminology: a *tile* is MR output pixels of one *run* (an output row; a whole image for 1x1
// stride-1 layers) times one to four vectors of 16 output channels, held in accumulator
// registers. K, the reduction, runs over the taps of the kernel window and, inside a tap, over
// *pairs* (int16) or *quads* (int8 VNNI) of input channels. TilePlan chooses the tile shape.
//
// Paths (the proofs of exactness are in docs/ARITHMETIC.md "Kernels: the SIMD paths"):
//   AVX-512 VNNI, int8:  u8 (q + 128) x s8 with vpdpbusd, 8 x 32 tiles (6 x 64 for short
//                        reductions), zero point removed through the bias;
//   AVX-512 VNNI, int16: vpdpwssd on int16 pairs, the same tiles, int32 over tap chunks proven
//                        not to overflow, int64 across chunks (int16 activations, int16
//                        weights, and int8 layers whose sums could leave int32);
//   AVX2:                (q - zp) widened to int16, vpmaddwd + vpaddd, 6 x 16 tiles, int32 or
//                        chunked int64 accumulation;
//   depthwise:           its own loops (16 channels x 8 pixels per tile, taps as the
//                        reduction; 3x3 unrolled at compile time).
// The output stage is the reference one, vectorized with per-lane multipliers and variable
// shifts, its constants loaded once per tile (stage_store_tile); every path equals
// reference::conv2d bit for bit (tests/kernels/test_simd_conv.cpp).
//
// Weight layouts (PackedConvWeights):
//   data (int16):     [group][block of 16 out channels][tap][input-channel pair][16][2]
//   data_s8 (int8):   [group][block of 32 out channels][tap][input-channel quad][32][4]
//   data (depthwise): [block of 16 channels][tap pair][16][2 taps]
//   dw_dwords:        [block of 16 channels][tap][16] dwords (w, 0)
// Channels beyond C_out and the input channels or taps that complete a pair/quad are zero.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

#include "../context.hpp"
#include "../params.hpp"
#include "../reference/conv2d.hpp"
#include "../reference/gemm.hpp"
#include "arch.hpp"

// The register-blocked tiles are compiled as functions of their own: inlined into the large
// convolution loops, GCC 12 was seen to spill a weight register to the stack on every step.
#if defined(__GNUC__) || defined(__clang__)
#define BPUQ_TILE_NOINLINE __attribute__((noinline))
#else
#define BPUQ_TILE_NOINLINE
#endif
#if defined(__GNUC__) || defined(__clang__)
#define BPUQ_STAGE_INLINE inline __attribute__((always_inline))
#else
#define BPUQ_STAGE_INLINE inline
#endif

BPUQ_NAMESPACE_BEGIN
namespace simd {

/// Convolution weights rearranged for the SIMD kernels; built once when a model is loaded.
struct PackedConvWeights {
    Conv2dGeometry geometry;          // the geometry the weights were packed for (spatial sizes ignored)
    bool depthwise = false;
    int cpairs = 0;                   // input-channel pairs per tap (dense)
    int blocks_per_group = 0;         // 16-channel output blocks per group
    int taps = 0;                     // kernel_h * kernel_w
    int tap_pairs = 0;                // depthwise: ceil(taps / 2)
    std::int32_t weight_zero_point = 0;
    std::int64_t max_abs_weight_sum = 0;  // max over output channels of sum |w - zp_w|
    std::int64_t max_abs_weight = 0;      // max |w - zp_w|
    std::vector<std::int16_t> data;
    std::vector<std::int16_t> ohwi;   // the original weights (minus zp_w), for the scalar fallback
    // AVX-512 VNNI u8 x s8 layout (dense, weights in int8):
    //   [group][block of 32 out channels][tap][quad of input channels][32 channels][4]
    std::vector<std::int8_t> data_s8;
    int quads = 0;                    // input-channel quads per tap
    int blocks32_per_group = 0;
    std::vector<std::int32_t> weight_sum;  // per output channel: sum of w (the u8 offset's compensation)
    std::vector<std::int64_t> tap_abs_sum;  // per tap: max over output channels of sum_ci |w|
    // depthwise, AVX-512 VNNI: [block of 16 channels][tap][16] dwords (w, 0) so that vpdpwssd on a
    // sign-extended activation dword multiplies by w and adds 0 * (sign bits)
    std::vector<std::int32_t> dw_dwords;

    static constexpr int kBlock = 16;

    /// Output-stage constants derived from a Requantization, kept across calls: a model calls a
    /// layer with the same parameters every time. Entries are keyed by every value they depend
    /// on, so a call with other parameters recomputes (and copies of the weights share it).
    struct StageCache {
        std::mutex mutex;
        struct Entry {
            std::vector<std::int64_t> key;
            std::shared_ptr<const void> value;
        };
        Entry entries[4];
        int next = 0;
    };
    std::shared_ptr<StageCache> stage_cache = std::make_shared<StageCache>();

    /// Packs OHWI weights (int8 or int16) with zero point `zp_w` (0 for symmetric weights; a
    /// MatMul's second activation may have one). Spatial input sizes of `g` are not used.
    template <class TW>
    static PackedConvWeights pack(const Conv2dGeometry& g, const TW* weights, std::int32_t zp_w = 0) {
        static_assert(is_activation_type<TW>, "bpuq: conv weights are int8 or int16");
        g.validate();
        PackedConvWeights p;
        p.geometry = g;
        p.weight_zero_point = zp_w;
        p.taps = g.kernel_h * g.kernel_w;
        p.depthwise = g.groups > 1 && g.in_c_per_group() == 1 && g.out_c_per_group() == 1;
        const int cig = g.in_c_per_group(), cog = g.out_c_per_group();
        p.ohwi.resize(static_cast<std::size_t>(g.weight_size()));
        for (std::size_t i = 0; i < p.ohwi.size(); ++i) {
            const std::int32_t v = std::int32_t(weights[i]) - zp_w;
            BPUQ_CHECK(v >= -32768 && v <= 32767, "kernels.weights",
                       "weight " + std::to_string(weights[i]) + " minus its zero point " + std::to_string(zp_w) +
                           " does not fit int16");
            p.ohwi[i] = static_cast<std::int16_t>(v);
        }
        auto w_at = [&](int co, int tap, int ci) -> std::int16_t {
            return p.ohwi[(static_cast<std::size_t>(co) * p.taps + tap) * cig + ci];
        };
        p.tap_abs_sum.assign(static_cast<std::size_t>(p.taps), 0);
        for (int co = 0; co < g.out_c; ++co)
            for (int t = 0; t < p.taps; ++t) {
                std::int64_t s = 0;
                for (int ci = 0; ci < cig; ++ci) s += std::abs(int(w_at(co, t, ci)));
                p.tap_abs_sum[static_cast<std::size_t>(t)] = std::max(p.tap_abs_sum[static_cast<std::size_t>(t)], s);
            }
        for (int co = 0; co < g.out_c; ++co) {
            std::int64_t s = 0;
            for (int t = 0; t < p.taps; ++t)
                for (int ci = 0; ci < cig; ++ci) {
                    s += std::abs(int(w_at(co, t, ci)));
                    p.max_abs_weight = std::max<std::int64_t>(p.max_abs_weight, std::abs(int(w_at(co, t, ci))));
                }
            p.max_abs_weight_sum = std::max(p.max_abs_weight_sum, s);
        }
        if (p.depthwise) {
            const int blocks = (g.out_c + kBlock - 1) / kBlock;
            p.tap_pairs = (p.taps + 1) / 2;
            p.data.assign(static_cast<std::size_t>(blocks) * p.tap_pairs * kBlock * 2, 0);
            for (int b = 0; b < blocks; ++b)
                for (int tp = 0; tp < p.tap_pairs; ++tp)
                    for (int j = 0; j < kBlock; ++j)
                        for (int h = 0; h < 2; ++h) {
                            const int c = b * kBlock + j, t = 2 * tp + h;
                            if (c < g.out_c && t < p.taps)
                                p.data[((static_cast<std::size_t>(b) * p.tap_pairs + tp) * kBlock + j) * 2 + h] = w_at(c, t, 0);
                        }
            p.dw_dwords.assign(static_cast<std::size_t>(blocks) * p.taps * kBlock, 0);
            p.weight_sum.assign(static_cast<std::size_t>(g.out_c), 0);
            for (int c = 0; c < g.out_c; ++c)
                for (int t = 0; t < p.taps; ++t) {
                    p.dw_dwords[(static_cast<std::size_t>(c / kBlock) * p.taps + t) * kBlock + c % kBlock] =
                        static_cast<std::int32_t>(static_cast<std::uint16_t>(w_at(c, t, 0)));
                    p.weight_sum[static_cast<std::size_t>(c)] += w_at(c, t, 0);
                }
            return p;
        }
        p.cpairs = (cig + 1) / 2;
        p.blocks_per_group = (cog + kBlock - 1) / kBlock;
        p.data.assign(static_cast<std::size_t>(g.groups) * p.blocks_per_group * p.taps * p.cpairs * kBlock * 2, 0);
        std::size_t i = 0;
        for (int grp = 0; grp < g.groups; ++grp)
            for (int b = 0; b < p.blocks_per_group; ++b)
                for (int t = 0; t < p.taps; ++t)
                    for (int cp = 0; cp < p.cpairs; ++cp)
                        for (int j = 0; j < kBlock; ++j)
                            for (int h = 0; h < 2; ++h, ++i) {
                                const int co_in_group = b * kBlock + j, ci = 2 * cp + h;
                                if (co_in_group < cog && ci < cig) p.data[i] = w_at(grp * cog + co_in_group, t, ci);
                            }
        const bool fits_s8 = std::all_of(p.ohwi.begin(), p.ohwi.end(), [](std::int16_t v) { return v >= -128 && v <= 127; });
        if (fits_s8) {
            p.quads = (cig + 3) / 4;
            p.blocks32_per_group = (cog + 31) / 32;
            p.data_s8.assign(static_cast<std::size_t>(g.groups) * p.blocks32_per_group * p.taps * p.quads * 32 * 4, 0);
            std::size_t j = 0;
            for (int grp = 0; grp < g.groups; ++grp)
                for (int b = 0; b < p.blocks32_per_group; ++b)
                    for (int t = 0; t < p.taps; ++t)
                        for (int q = 0; q < p.quads; ++q)
                            for (int c = 0; c < 32; ++c)
                                for (int h = 0; h < 4; ++h, ++j) {
                                    const int co_in_group = b * 32 + c, ci = 4 * q + h;
                                    if (co_in_group < cog && ci < cig)
                                        p.data_s8[j] = static_cast<std::int8_t>(w_at(grp * cog + co_in_group, t, ci));
                                }
            p.weight_sum.assign(static_cast<std::size_t>(g.out_c), 0);
            for (int co = 0; co < g.out_c; ++co)
                for (int t = 0; t < p.taps; ++t)
                    for (int ci = 0; ci < cig; ++ci) p.weight_sum[static_cast<std::size_t>(co)] += w_at(co, t, ci);
        }
        return p;
    }

    /// Same weights for a matching geometry (only spatial sizes and batch may differ).
    bool matches(const Conv2dGeometry& g) const noexcept {
        const Conv2dGeometry& w = geometry;
        return w.in_c == g.in_c && w.out_c == g.out_c && w.kernel_h == g.kernel_h && w.kernel_w == g.kernel_w &&
               w.groups == g.groups;
    }
};

/// GEMM weights [N][K] are 1x1-convolution weights with C_in = K, C_out = N.
template <class TB>
inline PackedConvWeights pack_gemm_weights(int n, int k, const TB* b, std::int32_t zp_b = 0) {
    Conv2dGeometry g;
    g.in_c = k;
    g.out_c = n;
    return PackedConvWeights::pack(g, b, zp_b);
}

namespace detail {

#if BPUQ_SIMD_HAS_AVX2

/// Per-channel constants of the output stage, in the lane order of the int64 steps: for every
/// 8 channels, the even channels' values then the odd channels' values.
struct OutputConstants {
    std::vector<std::int32_t> bias;        // per channel
    std::vector<std::int64_t> multiplier;  // [8-block][even 4, odd 4]
    std::vector<std::int64_t> shift, offset_bias, unoffset;
    // the same per 16 channels (AVX-512): [16-block][even 8, odd 8]; half = 2^(t-1)
    std::vector<std::int64_t> multiplier16, shift16, half16;
    std::int64_t low = 0, high = 0;        // clamp of the scaled value, before + zp
    std::int32_t zero_point = 0;
    bool half_to_even = false;

    /// Virtual channel v = group * padded_per_group + j stands for real channel
    /// group * per_group + j (j < per_group); padded_per_group is a multiple of 16.
    template <class Round>
    OutputConstants(const Requantization& rq, int groups, int per_group, int padded_per_group, Round) {
        const std::size_t padded = static_cast<std::size_t>(groups) * static_cast<std::size_t>(padded_per_group);
        bias.assign(padded, 0);
        multiplier.assign(padded, 0);
        shift.assign(padded, 31);
        offset_bias.assign(padded, 0);
        unoffset.assign(padded, 0);
        multiplier16.assign(padded, 0);
        shift16.assign(padded, 31);
        half16.assign(padded, std::int64_t(1) << 30);
        for (std::size_t v = 0; v < padded; ++v) {
            const int grp = static_cast<int>(v / static_cast<std::size_t>(padded_per_group));
            const int j = static_cast<int>(v % static_cast<std::size_t>(padded_per_group));
            const bool real = j < per_group;
            const std::size_t c = static_cast<std::size_t>(grp * per_group + std::min(j, per_group - 1));
            const QuantizedMultiplier& qm = rq.multiplier(c);
            const int t = qm.total_right_shift();
            const std::size_t slot = v / 8 * 8 + (v % 2) * 4 + (v % 8) / 2;
            bias[v] = real ? rq.bias_of(c) : 0;
            multiplier[slot] = qm.multiplier;
            shift[slot] = t;
            offset_bias[slot] = (std::int64_t(1) << 62) + (std::int64_t(1) << (t - 1));
            unoffset[slot] = std::int64_t(1) << (62 - t);
            const std::size_t slot16 = v / 16 * 16 + (v % 2) * 8 + (v % 16) / 2;
            multiplier16[slot16] = qm.multiplier;
            shift16[slot16] = t;
            half16[slot16] = std::int64_t(1) << (t - 1);
        }
        // the pipeline saturates the scaled value to int32, adds zp and clamps to [lo, hi]:
        // one clamp to [clamp(INT32_MIN, lo-zp, hi-zp), clamp(INT32_MAX, lo-zp, hi-zp)]
        const std::int64_t lo = std::int64_t(rq.lo) - rq.zero_point, hi = std::int64_t(rq.hi) - rq.zero_point;
        low = clamp_value<std::int64_t>(std::numeric_limits<std::int32_t>::min(), lo, hi);
        high = clamp_value<std::int64_t>(std::numeric_limits<std::int32_t>::max(), lo, hi);
        zero_point = rq.zero_point;
        half_to_even = std::is_same<Round, RoundHalfToEven>::value;
        prepare_fast<Round>(rq, groups, per_group, padded_per_group);
    }

    // ---- the cheap exact stage (docs/ARITHMETIC.md "the 32-bit output stage") ----
    // out = ((hi32((clamp(x, xlo, xhi) << pre) * m0) + radd) >> rsh) + zp, every step on 32-bit
    // lanes except the two vpmuldq. Used when every channel passes the checks of prepare_fast.
    enum FastMode : int { kFastClamp = 1, kFastPreShift = 2, kFastZpApart = 4 };
    bool fast = false;
    int fast_mode = 0;  // kFast* bits
    std::vector<std::int32_t> xlo, xhi, pre_shift, mul_even, mul_odd, round_add, round_shift;
    // per 16 channels: bias, xlo, xhi, pre_shift, mul_even, mul_odd, round_add, round_shift (16 each)
    std::vector<std::int32_t> fast_block;
    std::int32_t out_lo = 0, out_hi = 0;  // [lo, hi] of the output (for kFastClamp)

    /// Smallest int32 x with F(x) >= h, or INT32_MAX when there is none (F monotone).
    template <class Round>
    static std::int64_t first_at_least(const QuantizedMultiplier& qm, std::int64_t h) noexcept {
        constexpr std::int64_t kMin = std::numeric_limits<std::int32_t>::min(), kMax = std::numeric_limits<std::int32_t>::max();
        auto F = [&](std::int64_t x) { return multiply_by_quantized_multiplier<Round>(static_cast<std::int32_t>(x), qm); };
        // F(x) >= h starts near x = (h - 1/2) 2^t / m0 (exact but for ties); then step exactly
        const double est = (double(h) - 0.5) * std::ldexp(1.0, qm.total_right_shift()) / double(qm.multiplier);
        std::int64_t x = est <= double(kMin) ? kMin : est >= double(kMax) ? kMax : static_cast<std::int64_t>(std::ceil(est));
        while (x > kMin && F(x - 1) >= h) --x;
        while (x < kMax && F(x) < h) ++x;
        return x;
    }
    /// Largest int32 x with F(x) <= l, or INT32_MIN when there is none.
    template <class Round>
    static std::int64_t last_at_most(const QuantizedMultiplier& qm, std::int64_t l) noexcept {
        constexpr std::int64_t kMin = std::numeric_limits<std::int32_t>::min(), kMax = std::numeric_limits<std::int32_t>::max();
        auto F = [&](std::int64_t x) { return multiply_by_quantized_multiplier<Round>(static_cast<std::int32_t>(x), qm); };
        const double est = (double(l) + 0.5) * std::ldexp(1.0, qm.total_right_shift()) / double(qm.multiplier);
        std::int64_t x = est <= double(kMin) ? kMin : est >= double(kMax) ? kMax : static_cast<std::int64_t>(std::floor(est));
        while (x < kMax && F(x + 1) <= l) ++x;
        while (x > kMin && F(x) > l) --x;
        return x;
    }

    template <class Round>
    void prepare_fast(const Requantization& rq, int groups, int per_group, int padded_per_group) {
        constexpr std::int64_t kMin = std::numeric_limits<std::int32_t>::min(), kMax = std::numeric_limits<std::int32_t>::max();
        const std::size_t padded = bias.size();
        xlo.assign(padded, 0);
        xhi.assign(padded, 0);
        pre_shift.assign(padded, 0);
        mul_even.assign(padded, 0);
        mul_odd.assign(padded, 0);
        round_add.assign(padded, 0);
        round_shift.assign(padded, 1);
        std::vector<std::int64_t> ubound(padded, 0);
        out_lo = rq.lo;
        out_hi = rq.hi;
        bool ok = true, clamp = false, pre = false, fold = true;
        (void)groups;
        for (std::size_t v = 0; v < padded && ok; ++v) {
            const int grp = static_cast<int>(v / static_cast<std::size_t>(padded_per_group));
            const int j = static_cast<int>(v % static_cast<std::size_t>(padded_per_group));
            const std::size_t c = static_cast<std::size_t>(grp * per_group + std::min(j, per_group - 1));
            const QuantizedMultiplier& qm = rq.multiplier(c);
            const std::int64_t m0 = qm.multiplier;
            int t = qm.total_right_shift();
            if (m0 <= 0 || t < 1 || t > 62) {  // F == 0 (or a multiplier outside the normal form)
                if (m0 != 0 || t < 1 || t > 62) { ok = false; break; }
                xlo[v] = static_cast<std::int32_t>(kMin);
                xhi[v] = static_cast<std::int32_t>(kMax);
                round_shift[v] = 1;  // (0 + 1) >> 1 == 0
                ubound[v] = 0;
                if (0 < low || 0 > high) clamp = true;
                mul_even[v] = 0;
                continue;
            }
            // x outside [xlo, xhi] saturates exactly like xlo / xhi (F is monotone)
            const std::int64_t lo_x = last_at_most<Round>(qm, low), hi_x = first_at_least<Round>(qm, high);
            xlo[v] = static_cast<std::int32_t>(lo_x);
            xhi[v] = static_cast<std::int32_t>(hi_x);
            const std::int64_t least = std::min(lo_x, hi_x);  // min(max(x, xlo), xhi) lies in [least, xhi]
            auto F = [&](std::int64_t x) { return multiply_by_quantized_multiplier<Round>(static_cast<std::int32_t>(x), qm); };
            if (F(least) < low || F(hi_x) > high) clamp = true;
            // a total shift below 33 is raised to 33 by shifting x left (exact while it fits int32)
            const int a = std::max(0, 33 - t);
            const std::int64_t X = std::max(std::abs(least), std::abs(hi_x));
            if (a > 0 && (a >= 32 ? X != 0 : X > (kMax >> a))) { ok = false; break; }  // |x| << a must fit int32
            if (a > 0) pre = true;
            // no ties: x * m0 == 2^(t-1) (mod 2^t) needs v2(x) = t - 1 - v2(m0), impossible when
            // every non-zero |x| in range is below 2^(t - 1 - v2(m0)). Without ties both policies
            // round half up: floor((p + 2^(t-1)) / 2^t).
            int v2m = 0;
            while (((m0 >> v2m) & 1) == 0) ++v2m;
            const int k = t - 1 - v2m;
            if (!(k < 0 || k >= 32 || X < (std::int64_t(1) << k))) { ok = false; break; }
            t += a;
            pre_shift[v] = a;
            mul_even[v] = static_cast<std::int32_t>(m0);
            round_shift[v] = t - 32;
            ubound[v] = ((X << a) * m0 >> 32) + 1;  // |hi32(p)| bound
        }
        if (!ok) return;
        // the zero point joins the rounding constant when no lane can overflow
        for (std::size_t v = 0; v < padded; ++v) {
            const int s = round_shift[v];
            const std::int64_t folded = ubound[v] + (std::int64_t(1) << (s - 1)) + std::abs(std::int64_t(zero_point)) * (std::int64_t(1) << s);
            if (folded > kMax) fold = false;
        }
        for (std::size_t v = 0; v < padded; ++v) {
            const int s = round_shift[v];
            round_add[v] = static_cast<std::int32_t>((std::int64_t(1) << (s - 1)) + (fold ? std::int64_t(zero_point) * (std::int64_t(1) << s) : 0));
            if (v % 2 == 1) mul_odd[v - 1] = mul_even[v];
        }
        // one 512-byte record per 16 channels, so the vector stage addresses everything from one pointer
        fast_block.assign(padded / 16 * 128, 0);
        for (std::size_t v = 0; v < padded; ++v) {
            std::int32_t* r = &fast_block[v / 16 * 128 + v % 16];
            r[0] = bias[v];
            r[16] = xlo[v];
            r[32] = xhi[v];
            r[48] = pre_shift[v];
            r[64] = mul_even[v];
            r[80] = mul_odd[v];
            r[96] = round_add[v];
            r[112] = round_shift[v];
        }
        fast = true;
        fast_mode = (clamp ? kFastClamp : 0) | (pre ? kFastPreShift : 0) | (fold ? 0 : kFastZpApart);
    }
};

/// The OutputConstants of (rq, groups, per_group, padded_per_group, Round), from the weights'
/// cache when an earlier call used the same values.
template <class Round>
inline std::shared_ptr<const OutputConstants> output_constants(const PackedConvWeights& w, const Requantization& rq,
                                                               int groups, int per_group, int padded_per_group) {
    const std::size_t channels = static_cast<std::size_t>(groups) * static_cast<std::size_t>(per_group);
    const std::int64_t head[7] = {std::int64_t(std::is_same<Round, RoundHalfToEven>::value), groups, per_group, padded_per_group,
                                  rq.zero_point, rq.lo, rq.hi};
    auto channel_key = [&](std::size_t c, std::int64_t* two) {
        const QuantizedMultiplier& qm = rq.multiplier(c);
        two[0] = rq.bias_of(c);
        two[1] = (std::int64_t(qm.multiplier) << 8) ^ std::int64_t(qm.shift & 0xff);
    };
    // compared value by value, without building the key: this runs on every call
    auto matches = [&](const std::vector<std::int64_t>& key) {
        if (key.size() != 7 + 2 * channels || !std::equal(head, head + 7, key.begin())) return false;
        std::int64_t two[2];
        for (std::size_t c = 0; c < channels; ++c) {
            channel_key(c, two);
            if (two[0] != key[7 + 2 * c] || two[1] != key[8 + 2 * c]) return false;
        }
        return true;
    };
    PackedConvWeights::StageCache* cache = w.stage_cache.get();
    if (cache) {
        std::lock_guard<std::mutex> lock(cache->mutex);
        for (const auto& e : cache->entries)
            if (e.value && matches(e.key)) return std::static_pointer_cast<const OutputConstants>(e.value);
    }
    auto made = std::make_shared<const OutputConstants>(rq, groups, per_group, padded_per_group, Round{});
    if (cache) {
        std::vector<std::int64_t> key(head, head + 7);
        key.resize(7 + 2 * channels);
        for (std::size_t c = 0; c < channels; ++c) channel_key(c, &key[7 + 2 * c]);
        std::lock_guard<std::mutex> lock(cache->mutex);
        auto& e = cache->entries[cache->next];
        cache->next = (cache->next + 1) % 4;
        e.key = std::move(key);
        e.value = made;
    }
    return made;
}

inline __m256i load256(const void* p) noexcept { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

/// round((x + bias) * m / 2^t), clamped, + zp on 8 int32 lanes (channels c0 .. c0 + 7).
template <bool HalfToEven>
inline __m256i output_stage8(__m256i acc, const OutputConstants& k, int c0) noexcept {
    const __m256i x = _mm256_add_epi32(acc, load256(&k.bias[static_cast<std::size_t>(c0)]));
    const __m256i low = _mm256_set1_epi64x(k.low), high = _mm256_set1_epi64x(k.high), one = _mm256_set1_epi64x(1);
    __m256i r[2];
    for (int h = 0; h < 2; ++h) {
        const std::size_t s = static_cast<std::size_t>(c0 + 4 * h);
        const __m256i src = h == 0 ? x : _mm256_srli_epi64(x, 32);
        const __m256i shift = load256(&k.shift[s]);
        const __m256i p = _mm256_mul_epi32(src, load256(&k.multiplier[s]));
        __m256i biased = _mm256_add_epi64(p, load256(&k.offset_bias[s]));
        if (HalfToEven)
            biased = _mm256_add_epi64(_mm256_sub_epi64(biased, one), _mm256_and_si256(_mm256_srlv_epi64(p, shift), one));
        else
            biased = _mm256_add_epi64(biased, _mm256_cmpgt_epi64(_mm256_setzero_si256(), p));
        __m256i v = _mm256_sub_epi64(_mm256_srlv_epi64(biased, shift), load256(&k.unoffset[s]));
        v = _mm256_blendv_epi8(v, low, _mm256_cmpgt_epi64(low, v));
        v = _mm256_blendv_epi8(v, high, _mm256_cmpgt_epi64(v, high));
        r[h] = v;
    }
    return _mm256_add_epi32(_mm256_blend_epi32(r[0], _mm256_slli_epi64(r[1], 32), 0xaa),
                            _mm256_set1_epi32(k.zero_point));
}

/// The 32-bit output stage on 8 lanes (AVX2; the same steps and proof as fast_stage16).
template <int Mode>
BPUQ_STAGE_INLINE __m256i fast_stage8(__m256i acc, const OutputConstants& k, int c0) noexcept {
    const std::int32_t* q = k.fast_block.data() + static_cast<std::ptrdiff_t>(c0 / 16) * 128 + c0 % 16;
    __m256i x = _mm256_add_epi32(acc, load256(q));
    x = _mm256_min_epi32(_mm256_max_epi32(x, load256(q + 16)), load256(q + 32));
    if (Mode & OutputConstants::kFastPreShift) x = _mm256_sllv_epi32(x, load256(q + 48));
    const __m256i e = _mm256_mul_epi32(x, load256(q + 64));
    const __m256i o = _mm256_mul_epi32(_mm256_srli_epi64(x, 32), load256(q + 80));
    const __m256i u = _mm256_blend_epi32(_mm256_srli_epi64(e, 32), o, 0xaa);  // the high dwords
    __m256i r = _mm256_srav_epi32(_mm256_add_epi32(u, load256(q + 96)), load256(q + 112));
    if (Mode & OutputConstants::kFastZpApart) {
        if (Mode & OutputConstants::kFastClamp)
            r = _mm256_min_epi32(_mm256_max_epi32(r, _mm256_set1_epi32(static_cast<std::int32_t>(k.low))),
                                 _mm256_set1_epi32(static_cast<std::int32_t>(k.high)));
        r = _mm256_add_epi32(r, _mm256_set1_epi32(k.zero_point));
    } else if (Mode & OutputConstants::kFastClamp) {
        r = _mm256_min_epi32(_mm256_max_epi32(r, _mm256_set1_epi32(k.out_lo)), _mm256_set1_epi32(k.out_hi));
    }
    return r;
}

BPUQ_TILE_NOINLINE inline __m256i stage8_other(__m256i acc, const OutputConstants& k, int c0) noexcept {
    if (!k.fast) return k.half_to_even ? output_stage8<true>(acc, k, c0) : output_stage8<false>(acc, k, c0);
    switch (k.fast_mode) {
        case 1: return fast_stage8<1>(acc, k, c0);
        case 2: return fast_stage8<2>(acc, k, c0);
        case 3: return fast_stage8<3>(acc, k, c0);
        case 4: return fast_stage8<4>(acc, k, c0);
        case 5: return fast_stage8<5>(acc, k, c0);
        case 6: return fast_stage8<6>(acc, k, c0);
        default: return fast_stage8<7>(acc, k, c0);
    }
}

/// The output stage of channels c0 .. c0 + 7 (c0 a multiple of 8) in whichever exact form applies.
BPUQ_STAGE_INLINE __m256i stage8(__m256i acc, const OutputConstants& k, int c0) noexcept {
    if (k.fast && k.fast_mode == 0) return fast_stage8<0>(acc, k, c0);
    return stage8_other(acc, k, c0);
}

/// Stores 16 int32 lanes (already within [lo, hi]) as TOut with saturate_cast semantics.
template <class TOut>
inline void store16(TOut* out, __m256i a, __m256i b, int count) noexcept {
    alignas(32) TOut tmp[16];
    TOut* dst = count == 16 ? out : tmp;
    if constexpr (std::is_same<TOut, std::int32_t>::value) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), a);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 8), b);
    } else {
        const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xd8);  // 16 int16, in order
        if constexpr (std::is_same<TOut, std::int16_t>::value) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), w);
        } else {
            _mm_storeu_si128(reinterpret_cast<__m128i*>(dst),
                             _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)));
        }
    }
    if (count != 16) std::memcpy(out, tmp, static_cast<std::size_t>(count) * sizeof(TOut));
}

/// MR pixels x 16 channels: acc[m] += sum over taps and pairs of in(m, tap, pair) . w(tap, pair).
/// `in` points at the first pixel's window origin; pixel m starts pixel_stride elements later;
/// tap t adds tap_offset[t]. Weights are read sequentially (32 int16 per pair).
template <int MR>
BPUQ_TILE_NOINLINE inline void dense_tile(const std::int16_t* in, std::ptrdiff_t pixel_stride, const std::ptrdiff_t* tap_offset, int taps,
                       int pair_begin, int pair_end, const std::int16_t* w, __m256i (&acc)[6][2]) noexcept {
    __m256i r[MR][2];  // local accumulators: __m256i may alias anything (see vnni16_tile)
    for (int m = 0; m < MR; ++m) r[m][0] = acc[m][0], r[m][1] = acc[m][1];
    for (int t = 0; t < taps; ++t) {
        const std::int16_t* base = in + tap_offset[t] + 2 * pair_begin;
        for (int p = pair_begin; p < pair_end; ++p, base += 2, w += 32) {
            const __m256i w0 = load256(w), w1 = load256(w + 16);
            for (int m = 0; m < MR; ++m) {
                std::int32_t pair;
                std::memcpy(&pair, base + m * pixel_stride, 4);
                const __m256i a = _mm256_set1_epi32(pair);
                r[m][0] = _mm256_add_epi32(r[m][0], _mm256_madd_epi16(a, w0));
                r[m][1] = _mm256_add_epi32(r[m][1], _mm256_madd_epi16(a, w1));
            }
        }
    }
    for (int m = 0; m < MR; ++m) acc[m][0] = r[m][0], acc[m][1] = r[m][1];
}

#endif  // BPUQ_SIMD_HAS_AVX2

#if BPUQ_SIMD_HAS_AVX512_VNNI
/// MR pixels x NB vectors of 16 channels with vpdpbusd: acc[m][j] = sum of u8 activation quads .
/// s8 weights. vpdpbusd adds its four u8 x s8 products to the int32 lane without intermediate
/// saturation, so the sum is exact (unlike vpmaddubsw). Vector j's weights start at
/// w + (j / 2) * block_stride + (j % 2) * 64 (two vectors per block of 32 channels).
template <int MR, int NB>
BPUQ_TILE_NOINLINE inline void vnni_tile(const std::uint8_t* in, std::ptrdiff_t pixel_stride, const std::ptrdiff_t* tap_offset, int taps,
                      int quads, const std::int8_t* w, std::size_t block_stride, __m512i (&acc)[8][4]) noexcept {
    __m512i r[MR][NB];  // local: see vnni16_tile
    for (int m = 0; m < MR; ++m)
        for (int j = 0; j < NB; ++j) r[m][j] = _mm512_setzero_si512();
    const std::int8_t* w_lo = w;
    const std::int8_t* w_hi = w + block_stride;
    for (int t = 0; t < taps; ++t) {
        const std::uint8_t* base = in + tap_offset[t];
        for (int q = 0; q < quads; ++q, base += 4, w_lo += 128, w_hi += 128) {
            __m512i W[NB];
            for (int j = 0; j < NB; ++j) W[j] = _mm512_loadu_si512((j < 2 ? w_lo : w_hi) + (j % 2) * 64);
            for (int m = 0; m < MR; ++m) {
                std::int32_t quad;
                std::memcpy(&quad, base + m * pixel_stride, 4);
                const __m512i a = _mm512_set1_epi32(quad);
                for (int j = 0; j < NB; ++j) r[m][j] = _mm512_dpbusd_epi32(r[m][j], a, W[j]);
            }
        }
    }
    for (int m = 0; m < MR; ++m)
        for (int j = 0; j < NB; ++j) _mm512_storeu_si512(&acc[m][j], r[m][j]);
}
/// Depthwise: MR output pixels x 16 channels, one vpdpwssd per tap and pixel against weights
/// packed as dwords (w, 0). TSrc int8 / int16: raw activations, sign-extended at each tap (from
/// memory, which costs what a load costs); TSrc int32: activations already widened.
template <int MR, int Taps, class TSrc>
BPUQ_TILE_NOINLINE inline void depthwise_tile(const TSrc* origin, std::ptrdiff_t pixel_stride, const std::ptrdiff_t* tap_offset,
                                              int taps, const std::int32_t* w, __m512i (&acc)[8][1]) noexcept {
    if (Taps > 0) taps = Taps;  // 3x3 unrolled: GCC keeps the accumulators in place
    __m512i r[MR];
    for (int m = 0; m < MR; ++m) r[m] = _mm512_setzero_si512();
    for (int t = 0; t < taps; ++t) {
        const __m512i wt = _mm512_loadu_si512(w + 16 * t);
        const TSrc* p = origin + tap_offset[t];
        for (int m = 0; m < MR; ++m) {
            __m512i a;
            // the all-lanes maskz forms are the same vpmovsx; the plain intrinsics' undefined
            // pass-through makes GCC 12 warn (-Wuninitialized) once the tile is unrolled
            if constexpr (sizeof(TSrc) == 1)
                a = _mm512_maskz_cvtepi8_epi32(__mmask16(0xFFFF), _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + m * pixel_stride)));
            else if constexpr (sizeof(TSrc) == 2)
                a = _mm512_maskz_cvtepi16_epi32(__mmask16(0xFFFF),
                                                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + m * pixel_stride)));
            else
                a = _mm512_loadu_si512(p + m * pixel_stride);
            r[m] = _mm512_dpwssd_epi32(r[m], a, wt);
        }
    }
    for (int m = 0; m < MR; ++m) _mm512_storeu_si512(&acc[m][0], r[m]);
}
template <int MR, class TSrc>
inline void depthwise_tile_any(int mr, const TSrc* origin, std::ptrdiff_t ps, const std::ptrdiff_t* toff, int taps,
                               const std::int32_t* w, __m512i (&acc)[8][1]) noexcept {
    if constexpr (MR > 1) {
        if (mr < MR) return depthwise_tile_any<MR - 1>(mr, origin, ps, toff, taps, w, acc);
    }
    if (taps == 9) depthwise_tile<MR, 9>(origin, ps, toff, taps, w, acc);
    else depthwise_tile<MR, 0>(origin, ps, toff, taps, w, acc);
}
/// vnni_tile<mr, NB> for a run-time mr <= MR.
template <int MR, int NB>
inline void vnni_tile_any(int mr, const std::uint8_t* in, std::ptrdiff_t ps, const std::ptrdiff_t* toff, int taps, int quads,
                          const std::int8_t* w, std::size_t block_stride, __m512i (&acc)[8][4]) noexcept {
    if constexpr (MR > 1) {
        if (mr < MR) return vnni_tile_any<MR - 1, NB>(mr, in, ps, toff, taps, quads, w, block_stride, acc);
    }
    vnni_tile<MR, NB>(in, ps, toff, taps, quads, w, block_stride, acc);
}
/// MR pixels x NB blocks of 16 channels with vpdpwssd on int16 pairs (exact while a pair sum
/// fits int32, which conv2d checks), over taps [t0, t1); block j's weights start at
/// w + j * block_stride.
template <int MR, int NB>
BPUQ_TILE_NOINLINE inline void vnni16_tile(const std::int16_t* in, std::ptrdiff_t pixel_stride, const std::ptrdiff_t* tap_offset, int t0,
                        int t1, int cpairs, const std::int16_t* w, std::size_t block_stride, __m512i (&acc)[8][4]) noexcept {
    // local accumulators: __m512i may alias anything, so updating acc[][] in place would force a
    // store after every instruction
    __m512i r[MR][NB];
    for (int m = 0; m < MR; ++m)
        for (int j = 0; j < NB; ++j) r[m][j] = _mm512_setzero_si512();
    for (int t = t0; t < t1; ++t) {
        const std::int16_t* base = in + tap_offset[t];
        const std::int16_t* wt = w + static_cast<std::size_t>(t) * cpairs * 32;
        for (int p = 0; p < cpairs; ++p, base += 2, wt += 32) {
            __m512i W[NB];
            for (int j = 0; j < NB; ++j) W[j] = _mm512_loadu_si512(wt + j * block_stride);
            for (int m = 0; m < MR; ++m) {
                std::int32_t pair;
                std::memcpy(&pair, base + m * pixel_stride, 4);
                const __m512i a = _mm512_set1_epi32(pair);
                for (int j = 0; j < NB; ++j) r[m][j] = _mm512_dpwssd_epi32(r[m][j], a, W[j]);
            }
        }
    }
    for (int m = 0; m < MR; ++m)
        for (int j = 0; j < NB; ++j) _mm512_storeu_si512(&acc[m][j], r[m][j]);
}
/// vnni16_tile<mr, NB> for a run-time mr <= MR.
template <int MR, int NB>
inline void vnni16_tile_any(int mr, const std::int16_t* in, std::ptrdiff_t ps, const std::ptrdiff_t* toff, int t0, int t1,
                            int cpairs, const std::int16_t* w, std::size_t block_stride, __m512i (&acc)[8][4]) noexcept {
    if constexpr (MR > 1) {
        if (mr < MR) return vnni16_tile_any<MR - 1, NB>(mr, in, ps, toff, t0, t1, cpairs, w, block_stride, acc);
    }
    vnni16_tile<MR, NB>(in, ps, toff, t0, t1, cpairs, w, block_stride, acc);
}

/// The output-stage constants as locals of the calling loop: stores through an int8 output
/// pointer may alias anything, so constants read through OutputConstants would be reloaded after
/// every store; copies whose address never escapes are not.
struct OutputRegs16 {
    const std::int32_t* bias;
    const std::int64_t* multiplier;
    const std::int64_t* shift;
    const std::int64_t* half;
    std::int64_t low, high;  // scalars, not registers: they must not compete with the tile's accumulators
    std::int32_t zero_point;
    // the 32-bit stage (OutputConstants::prepare_fast)
    const std::int32_t* fast_block;
    std::int32_t out_lo, out_hi;
    int mode;  // 0..7: fast stage with OutputConstants::fast_mode bits; 8: 64-bit, half to even; 9: 64-bit, half away
    explicit OutputRegs16(const OutputConstants& k) noexcept
        : bias(k.bias.data()), multiplier(k.multiplier16.data()), shift(k.shift16.data()), half(k.half16.data()),
          low(k.low), high(k.high), zero_point(k.zero_point), fast_block(k.fast_block.data()), out_lo(k.out_lo), out_hi(k.out_hi),
          mode(k.fast ? k.fast_mode : k.half_to_even ? 8 : 9) {}
};

/// The output stage on 16 int32 lanes (channels v0 .. v0 + 15) with AVX-512's 64-bit
/// arithmetic shifts and min/max: the same formula as output_stage8, fewer instructions.
template <bool HalfToEven>
inline __m512i output_stage16(__m512i acc, const OutputRegs16& k, int v0) noexcept {
    const __m512i x = _mm512_add_epi32(acc, _mm512_loadu_si512(k.bias + v0));
    const __m512i one = _mm512_set1_epi64(1);
    __m512i r[2];
    for (int h = 0; h < 2; ++h) {
        const int s = v0 + 8 * h;
        const __m512i src = h == 0 ? x : _mm512_srli_epi64(x, 32);
        const __m512i shift = _mm512_loadu_si512(k.shift + s);
        const __m512i p = _mm512_mul_epi32(src, _mm512_loadu_si512(k.multiplier + s));
        __m512i biased = _mm512_add_epi64(p, _mm512_loadu_si512(k.half + s));  // |p| < 2^62: no overflow
        if (HalfToEven)
            biased = _mm512_add_epi64(_mm512_sub_epi64(biased, one), _mm512_and_si512(_mm512_srlv_epi64(p, shift), one));
        else
            biased = _mm512_add_epi64(biased, _mm512_srai_epi64(p, 63));
        r[h] = _mm512_min_epi64(_mm512_max_epi64(_mm512_srav_epi64(biased, shift), _mm512_set1_epi64(k.low)),
                                _mm512_set1_epi64(k.high));
    }
    return _mm512_add_epi32(_mm512_mask_blend_epi32(0xaaaa, r[0], _mm512_slli_epi64(r[1], 32)),
                            _mm512_set1_epi32(k.zero_point));
}


/// The 32-bit output stage on 16 lanes (exact when OutputConstants::prepare_fast accepted every
/// channel; proof in docs/ARITHMETIC.md): clamp x so the result cannot leave [low, high] and
/// cannot tie, two vpmuldq, the high dwords, one rounding shift on 32-bit lanes.
template <int Mode>
BPUQ_STAGE_INLINE __m512i fast_stage16(__m512i acc, const OutputRegs16& k, int v0) noexcept {
    const std::int32_t* q = k.fast_block + std::ptrdiff_t(v0) * 8;  // the record of channels v0 .. v0 + 15
    __m512i x = _mm512_add_epi32(acc, _mm512_loadu_si512(q));
    x = _mm512_min_epi32(_mm512_max_epi32(x, _mm512_loadu_si512(q + 16)), _mm512_loadu_si512(q + 32));
    if (Mode & OutputConstants::kFastPreShift) x = _mm512_sllv_epi32(x, _mm512_loadu_si512(q + 48));
    const __m512i e = _mm512_mul_epi32(x, _mm512_loadu_si512(q + 64));
    const __m512i o = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_loadu_si512(q + 80));
    // high dwords: even lanes from e (moved down), odd lanes from o (already in place)
    const __m512i u = _mm512_mask_shuffle_epi32(o, 0x5555, e, static_cast<_MM_PERM_ENUM>(_MM_SHUFFLE(3, 3, 1, 1)));
    __m512i r = _mm512_srav_epi32(_mm512_add_epi32(u, _mm512_loadu_si512(q + 96)), _mm512_loadu_si512(q + 112));
    if (Mode & OutputConstants::kFastZpApart) {
        if (Mode & OutputConstants::kFastClamp)
            r = _mm512_min_epi32(_mm512_max_epi32(r, _mm512_set1_epi32(static_cast<std::int32_t>(k.low))),
                                 _mm512_set1_epi32(static_cast<std::int32_t>(k.high)));
        r = _mm512_add_epi32(r, _mm512_set1_epi32(k.zero_point));
    } else if (Mode & OutputConstants::kFastClamp) {
        r = _mm512_min_epi32(_mm512_max_epi32(r, _mm512_set1_epi32(k.out_lo)), _mm512_set1_epi32(k.out_hi));
    }
    return r;
}

/// The less common forms of the stage, out of line (they would bloat every tile loop).
BPUQ_TILE_NOINLINE inline __m512i stage16_other(__m512i acc, const OutputRegs16& k, int v0) noexcept {
    switch (k.mode) {
        case 1: return fast_stage16<1>(acc, k, v0);
        case 2: return fast_stage16<2>(acc, k, v0);
        case 3: return fast_stage16<3>(acc, k, v0);
        case 4: return fast_stage16<4>(acc, k, v0);
        case 5: return fast_stage16<5>(acc, k, v0);
        case 6: return fast_stage16<6>(acc, k, v0);
        case 7: return fast_stage16<7>(acc, k, v0);
        case 8: return output_stage16<true>(acc, k, v0);
        default: return output_stage16<false>(acc, k, v0);
    }
}

/// The output stage of 16 channels v0 .. v0 + 15 (v0 a multiple of 16), whichever form the
/// constants allow; the common one (no final clamp, no pre-shift, zero point folded) inline.
BPUQ_STAGE_INLINE __m512i stage16(__m512i acc, const OutputRegs16& k, int v0) noexcept {
    if (k.mode == 0) return fast_stage16<0>(acc, k, v0);
    return stage16_other(acc, k, v0);
}

/// Stores `count` <= 16 int32 lanes as TOut with saturate_cast semantics (masked only for a tail:
/// masked narrowing stores are slow).
template <class TOut>
inline void store16_avx512(TOut* out, __m512i v, int count) noexcept {
    if constexpr (std::is_same<TOut, std::int32_t>::value) {
        if (count == 16) _mm512_storeu_si512(out, v);
        else _mm512_mask_storeu_epi32(out, static_cast<__mmask16>((1u << count) - 1u), v);
    } else if constexpr (std::is_same<TOut, std::int16_t>::value) {
        const __m256i n = _mm512_cvtsepi32_epi16(v);
        if (count == 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), n);
        else _mm256_mask_storeu_epi16(out, static_cast<__mmask16>((1u << count) - 1u), n);
    } else {
        const __m128i n = _mm512_cvtsepi32_epi8(v);
        if (count == 16) _mm_storeu_si128(reinterpret_cast<__m128i*>(out), n);
        else _mm_mask_storeu_epi8(out, static_cast<__mmask16>((1u << count) - 1u), n);
    }
}
/// The 32-bit stage's constants of 16 channels in registers, loaded once and reused for every
/// pixel of a tile (reading them from the record at each pixel made the stage load-bound).
template <int Mode>
struct FastStageRegs16 {
    __m512i bias, xlo, xhi, pre, mul_even, mul_odd, round_add, round_shift, low, high, zero_point;
    BPUQ_STAGE_INLINE FastStageRegs16(const OutputRegs16& k, int v0) noexcept {
        const std::int32_t* q = k.fast_block + std::ptrdiff_t(v0) * 8;
        bias = _mm512_loadu_si512(q);
        xlo = _mm512_loadu_si512(q + 16);
        xhi = _mm512_loadu_si512(q + 32);
        pre = (Mode & OutputConstants::kFastPreShift) ? _mm512_loadu_si512(q + 48) : _mm512_setzero_si512();
        mul_even = _mm512_loadu_si512(q + 64);
        mul_odd = _mm512_loadu_si512(q + 80);
        round_add = _mm512_loadu_si512(q + 96);
        round_shift = _mm512_loadu_si512(q + 112);
        const bool apart = (Mode & OutputConstants::kFastZpApart) != 0;
        low = _mm512_set1_epi32(apart ? static_cast<std::int32_t>(k.low) : k.out_lo);
        high = _mm512_set1_epi32(apart ? static_cast<std::int32_t>(k.high) : k.out_hi);
        zero_point = _mm512_set1_epi32(k.zero_point);
    }
    /// The same steps as fast_stage16<Mode>.
    BPUQ_STAGE_INLINE __m512i operator()(__m512i acc) const noexcept {
        __m512i x = _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(acc, bias), xlo), xhi);
        if (Mode & OutputConstants::kFastPreShift) x = _mm512_sllv_epi32(x, pre);
        const __m512i e = _mm512_mul_epi32(x, mul_even);
        const __m512i o = _mm512_mul_epi32(_mm512_srli_epi64(x, 32), mul_odd);
        const __m512i u = _mm512_mask_shuffle_epi32(o, 0x5555, e, static_cast<_MM_PERM_ENUM>(_MM_SHUFFLE(3, 3, 1, 1)));
        __m512i r = _mm512_srav_epi32(_mm512_add_epi32(u, round_add), round_shift);
        if (Mode & OutputConstants::kFastClamp) r = _mm512_min_epi32(_mm512_max_epi32(r, low), high);
        if (Mode & OutputConstants::kFastZpApart) r = _mm512_add_epi32(r, zero_point);
        return r;
    }
};

/// Output stage and store of a tile: acc[m][j] holds pixel m (row stride out_stride elements of
/// `out`) and channels v0 + 16 j ..; `count` channels are real. One instantiation per stage form.
template <int Mode, int NBMax, class TOut>
BPUQ_TILE_NOINLINE void stage_store_tile_fast(const __m512i (&acc)[8][NBMax], int mr, int nb, const OutputRegs16& k, int v0,
                                              TOut* out, std::ptrdiff_t out_stride, int count) noexcept {
    for (int j = 0; j < nb && 16 * j < count; ++j) {
        const FastStageRegs16<Mode> stage(k, v0 + 16 * j);
        const int cnt = std::min(16, count - 16 * j);
        TOut* o = out + 16 * j;
        if (cnt == 16) {
            for (int m = 0; m < mr; ++m, o += out_stride) store16_avx512(o, stage(acc[m][j]), 16);
        } else {
            for (int m = 0; m < mr; ++m, o += out_stride) store16_avx512(o, stage(acc[m][j]), cnt);
        }
    }
}
template <int NBMax, class TOut>
BPUQ_TILE_NOINLINE void stage_store_tile_generic(const __m512i (&acc)[8][NBMax], int mr, int nb, const OutputRegs16& k, int v0,
                                                 TOut* out, std::ptrdiff_t out_stride, int count) noexcept {
    for (int j = 0; j < nb && 16 * j < count; ++j) {
        const int cnt = std::min(16, count - 16 * j);
        for (int m = 0; m < mr; ++m) store16_avx512(out + m * out_stride + 16 * j, stage16(acc[m][j], k, v0 + 16 * j), cnt);
    }
}
/// stage_store_tile_* for whichever stage form the constants allow.
template <int NBMax, class TOut>
inline void stage_store_tile(const __m512i (&acc)[8][NBMax], int mr, int nb, const OutputRegs16& k, int v0, TOut* out,
                             std::ptrdiff_t out_stride, int count) noexcept {
    switch (k.mode) {
        case 0: stage_store_tile_fast<0>(acc, mr, nb, k, v0, out, out_stride, count); break;
        case 1: stage_store_tile_fast<1>(acc, mr, nb, k, v0, out, out_stride, count); break;
        case 2: stage_store_tile_fast<2>(acc, mr, nb, k, v0, out, out_stride, count); break;
        case 3: stage_store_tile_fast<3>(acc, mr, nb, k, v0, out, out_stride, count); break;
        case 4: stage_store_tile_fast<4>(acc, mr, nb, k, v0, out, out_stride, count); break;
        case 5: stage_store_tile_fast<5>(acc, mr, nb, k, v0, out, out_stride, count); break;
        case 6: stage_store_tile_fast<6>(acc, mr, nb, k, v0, out, out_stride, count); break;
        case 7: stage_store_tile_fast<7>(acc, mr, nb, k, v0, out, out_stride, count); break;
        default: stage_store_tile_generic(acc, mr, nb, k, v0, out, out_stride, count); break;
    }
}
#endif  // BPUQ_SIMD_HAS_AVX512_VNNI

/// How the dense VNNI paths cut a convolution into work items and register tiles. A tile is nb
/// vectors of 16 output channels x mr pixels: 4 x 6 when a 64-channel block's weights stay in L1
/// (short reductions such as 1x1 layers: 0.42 loads per multiply-add instead of 0.63), else 2 x 8
/// (long reductions: fewer weights in flight). A work item is a span of pixels of one run times a
/// chunk of tile_nb vectors of one group, channels innermost so that consecutive items read the
/// same activations. A run is an output row, or a whole image for 1x1 stride-1 layers (a GEMM:
/// output pixel p reads padded input pixel p, so runs cross rows).
struct TilePlan {
    int tile_nb, tile_mr;
    bool pointwise;
    std::int64_t runs;
    int run_pixels, span, spans, vecs_per_group, chunks_per_group;
    std::int64_t chunks, items;
    std::ptrdiff_t pixel_stride;  // elements of the padded input between neighbouring pixels of a run

    /// k_steps: quads (int8) or pairs (int16) per tap, 64 weight bytes per step and vector;
    /// cstride: elements per padded input pixel.
    TilePlan(const Conv2dGeometry& g, int taps, int k_steps, int cstride) noexcept {
        const int cog = g.out_c_per_group();
        const bool wide = cog > 32 && std::size_t(taps) * std::size_t(k_steps) * 256 <= 16384;
        tile_nb = wide ? 4 : 2;
        tile_mr = wide ? 6 : 8;
        pointwise = taps == 1 && g.stride_h == 1 && g.stride_w == 1;
        runs = pointwise ? g.batch : std::int64_t(g.batch) * g.out_h();
        run_pixels = pointwise ? g.out_h() * g.out_w() : g.out_w();
        pixel_stride = std::ptrdiff_t(pointwise ? 1 : g.stride_w) * cstride;
        span = 8 * tile_mr;
        spans = (run_pixels + span - 1) / span;
        vecs_per_group = (cog + 15) / 16;
        chunks_per_group = (vecs_per_group + tile_nb - 1) / tile_nb;
        chunks = std::int64_t(g.groups) * chunks_per_group;
        items = runs * spans * chunks;
    }
    struct Item {
        int n, oy;            // image and first output row of the run
        int grp, vec0, nb;    // group, first vector of 16 channels in the group (even), vectors
        int p_begin, p_end;   // pixels of the run
    };
    Item item(std::int64_t i, const Conv2dGeometry& g) const noexcept {
        Item it;
        const std::int64_t run = i / (std::int64_t(spans) * chunks);
        const int sp = static_cast<int>(i / chunks % spans), chunk = static_cast<int>(i % chunks);
        it.grp = chunk / chunks_per_group;
        it.vec0 = chunk % chunks_per_group * tile_nb;
        it.nb = std::min(tile_nb, vecs_per_group - it.vec0);
        it.n = static_cast<int>(pointwise ? run : run / g.out_h());
        it.oy = pointwise ? 0 : static_cast<int>(run % g.out_h());
        it.p_begin = sp * span;
        it.p_end = std::min(run_pixels, it.p_begin + span);
        return it;
    }
};

/// The padded activation copies share one frame: [N][H + pads][W + pads][cstride] elements,
/// `fill` in the spatial padding (and in each pixel's unused channel slots when `fill_interior`)
/// plus a 64-element tail so that vector loads never leave the buffer. `convert_row(src, dst)`
/// writes the in_w pixels of one input row. Every element is written once (no fill of the whole
/// buffer first) and padded rows are split over the context's threads: done serially before the
/// fork, these copies held two-thread depthwise layers to 1.3x.
/// convert_row must copy what it captures into locals before its loop: byte and int16 stores may
/// alias the closure's members, which keeps the compiler from vectorizing.
template <class TBuf, class TIn, class ConvertRow>
inline void padded_copy(const KernelContext& ctx, const Conv2dGeometry& g, const TIn* input, int cstride, TBuf fill,
                        bool fill_interior, std::unique_ptr<TBuf[]>& buf, int& hp, int& wp, const ConvertRow& convert_row) {
    hp = g.in_h + g.pad_top + g.pad_bottom;
    wp = g.in_w + g.pad_left + g.pad_right;
    const std::int64_t padded_row = std::int64_t(wp) * cstride, in_row = std::int64_t(g.in_w) * g.in_c;
    const std::int64_t rows = std::int64_t(g.batch) * hp;
    buf.reset(new TBuf[static_cast<std::size_t>(rows * padded_row + 64)]);  // uninitialized: all written below
    TBuf* const out = buf.get();
    const std::int64_t height = hp, in_h = g.in_h, top = g.pad_top;
    const std::int64_t left = std::int64_t(g.pad_left) * cstride, right = std::int64_t(g.pad_right) * cstride;
    const std::int64_t interior = std::int64_t(g.in_w) * cstride;
    parallel_for(ctx, rows, [=, &convert_row](std::int64_t r0, std::int64_t r1) {
        for (std::int64_t r = r0; r < r1; ++r) {
            TBuf* dst = out + r * padded_row;
            const std::int64_t n = r / height, y = r % height - top;
            if (y < 0 || y >= in_h) {
                std::fill_n(dst, padded_row, fill);
                continue;
            }
            std::fill_n(dst, left, fill);
            if (fill_interior) std::fill_n(dst + left, interior, fill);
            convert_row(input + (n * in_h + y) * in_row, dst + left);
            std::fill_n(dst + left + interior, right, fill);
        }
    });
    std::fill_n(out + rows * padded_row, 64, fill);
}

/// int8 activations as u8 = q + 128, padded (space and channels) with zp + 128, i.e. a real 0:
/// [N][H + pads][W + pads][groups][4 * quads].
template <class TIn>
inline void offset_and_pad_u8(const KernelContext& ctx, const Conv2dGeometry& g, const TIn* input, std::int32_t zp, int quads,
                              std::unique_ptr<std::uint8_t[]>& buf, int& hp, int& wp, int& cstride) {
    const int cig = g.in_c_per_group(), groups = g.groups, in_w = g.in_w, in_c = g.in_c;
    cstride = g.groups * 4 * quads;
    const auto fill = static_cast<std::uint8_t>(zp + 128);
    if (g.groups == 1 && cstride == g.in_c) {  // rows are contiguous in both: one long loop per row
        const std::int64_t row = std::int64_t(g.in_w) * g.in_c;
        padded_copy(ctx, g, input, cstride, fill, false, buf, hp, wp, [row](const TIn* src, std::uint8_t* dst) {
            const std::int64_t count = row;
            for (std::int64_t i = 0; i < count; ++i) dst[i] = static_cast<std::uint8_t>(static_cast<std::uint8_t>(src[i]) ^ 0x80u);
        });
        return;
    }
    if (sizeof(TIn) == 1 && g.groups == 1 && cstride == 4) {
        // one quad per pixel (an image's 3 channels): 4-byte little-endian words (x86 only)
        const std::uint32_t low = cig >= 4 ? 0xffffffffu : (1u << (8 * cig)) - 1u;
        const std::uint32_t fill_word = (0x01010101u * fill) & ~low, flip = 0x80808080u & low;
        const auto* end = reinterpret_cast<const std::uint8_t*>(input) + std::int64_t(g.batch) * g.in_h * g.in_w * cig;
        padded_copy(ctx, g, input, cstride, fill, false, buf, hp, wp, [=](const TIn* src, std::uint8_t* dst) {
            const auto* bytes = reinterpret_cast<const std::uint8_t*>(src);
            const auto* last = end;
            const int width = in_w, per_pixel = cig;
            const std::uint32_t keep = low, set = fill_word, xor_mask = flip;
            for (int x = 0; x < width; ++x, dst += 4, bytes += per_pixel) {
                std::uint32_t word = 0;
                if (bytes + 4 <= last) std::memcpy(&word, bytes, 4);  // reads into the next pixel
                else std::memcpy(&word, bytes, static_cast<std::size_t>(per_pixel));
                word = ((word & keep) ^ xor_mask) | set;
                std::memcpy(dst, &word, 4);
            }
        });
        return;
    }
    padded_copy(ctx, g, input, cstride, fill, true, buf, hp, wp, [=](const TIn* src, std::uint8_t* dst) {
        const int width = in_w, channels = in_c, per_group = cig, group_count = groups, slot = 4 * quads, stride = cstride;
        for (int x = 0; x < width; ++x, src += channels, dst += stride)
            for (int grp = 0; grp < group_count; ++grp)
                for (int c = 0; c < per_group; ++c)
                    dst[grp * slot + c] = static_cast<std::uint8_t>(std::int32_t(src[grp * per_group + c]) + 128);
    });
}

/// Depthwise input: NHWC copy of the raw activations (minus `subtract`) with `fill` in the
/// spatial padding.
template <class TIn, class TBuf>
inline void pad_plain(const KernelContext& ctx, const Conv2dGeometry& g, const TIn* input, TBuf fill, std::int32_t subtract,
                      std::unique_ptr<TBuf[]>& buf, int& hp, int& wp) {
    const std::int64_t row = std::int64_t(g.in_w) * g.in_c;
    padded_copy(ctx, g, input, g.in_c, fill, false, buf, hp, wp, [row, subtract](const TIn* src, TBuf* dst) {
        const std::int64_t count = row;
        const std::int32_t minus = subtract;
        for (std::int64_t i = 0; i < count; ++i) dst[i] = static_cast<TBuf>(std::int32_t(src[i]) - minus);
    });
}

/// Activations widened to int16 as (q - zp), spatially zero-padded, each group's channels
/// padded to an even count: [N][H + pads][W + pads][groups][2 * cpairs].
template <class TIn>
inline void widen_and_pad(const KernelContext& ctx, const Conv2dGeometry& g, const TIn* input, std::int32_t zp, int cpairs_padded,
                          std::unique_ptr<std::int16_t[]>& buf, int& hp, int& wp, int& cstride) {
    const int cig = g.in_c_per_group(), groups = g.groups, in_w = g.in_w, in_c = g.in_c;
    cstride = g.groups * 2 * cpairs_padded;
    padded_copy(ctx, g, input, cstride, std::int16_t(0), cstride != g.in_c, buf, hp, wp, [=](const TIn* src, std::int16_t* dst) {
        const int width = in_w, channels = in_c, per_group = cig, group_count = groups, slot = 2 * cpairs_padded, stride = cstride;
        const std::int32_t minus = zp;
        for (int x = 0; x < width; ++x, src += channels, dst += stride)
            for (int grp = 0; grp < group_count; ++grp)
                for (int c = 0; c < per_group; ++c)
                    dst[grp * slot + c] = static_cast<std::int16_t>(std::int32_t(src[grp * per_group + c]) - minus);
    });
}

}  // namespace detail

/// Convolution over NHWC with packed weights; bit-identical to reference::conv2d.
/// AVX-512 VNNI and AVX2 run SIMD kernels. The scalar reference runs instead for other
/// architectures, int16 inputs with a non-zero zero point, int16 activations against a weight of
/// -32768 (a vpmaddwd pair could reach 2^31), and depthwise layers whose sums could leave int32.
/// Threads: ctx.threads split output rows x channel blocks; results do not depend on them.
template <class Arch = default_arch, class Round = RoundHalfAwayFromZero, class TIn, class TOut>
inline void conv2d(const KernelContext& ctx, const Conv2dGeometry& g, const TIn* input, std::int32_t input_zero_point,
                   const PackedConvWeights& w, const Requantization& rq, TOut* output) {
    static_assert(is_activation_type<TIn>, "bpuq: conv2d takes int8/int16 inputs");
    static_assert(is_output_type<TOut>, "bpuq: conv2d writes int8, int16 or int32");
    g.validate();
    BPUQ_CHECK(w.matches(g), "kernels.conv",
               g.to_string() + ": the packed weights were made for " + w.geometry.to_string());
    // Largest |q - zp_in| the activations can reach; it bounds every pair sum and partial sum.
    const std::int64_t max_abs_input =
        sizeof(TIn) == 2 ? 32768 : std::max<std::int64_t>(std::abs(-128 - input_zero_point), std::abs(127 - input_zero_point));
    constexpr std::int64_t kInt32Max = std::numeric_limits<std::int32_t>::max();
    // vpmaddwd is exact while one pair sum fits int32 (fails only for (-32768)^2 * 2)
    const bool pair_exact = 2 * max_abs_input * w.max_abs_weight <= kInt32Max;
    const bool simd_ok = static_cast<int>(simd_level<Arch>) >= static_cast<int>(Level::avx2) && pair_exact && (sizeof(TIn) == 1 || input_zero_point == 0) &&
                         input_zero_point >= -128 && input_zero_point <= 127;
    // int32 accumulation is exact when no partial sum can leave int32; else int64 over chunks
    // (acc + bias is formed in int32 by the vector output stage, so the bias counts too)
    std::int64_t max_abs_bias = 0;
    for (int c = 0; rq.bias && c < g.out_c; ++c)
        max_abs_bias = std::max<std::int64_t>(max_abs_bias, std::abs(std::int64_t(rq.bias[c])));
    const bool wide = max_abs_input * w.max_abs_weight_sum + max_abs_bias > kInt32Max;
    // a depthwise layer whose sums could leave int32 (int16 x int16): taps in chunks whose partial
    // sums provably fit int32 (AVX-512 VNNI only), added in int64
    std::vector<int> dw_chunk_start{0};
    bool dw_chunks_ok = !wide;
    if (wide && w.depthwise && simd_level<Arch> == Level::avx512_vnni) {
        dw_chunks_ok = true;
        std::int64_t run = 0;
        for (int t = 0; t < w.taps; ++t) {
            const std::int64_t tap = max_abs_input * w.tap_abs_sum[static_cast<std::size_t>(t)];
            if (tap > kInt32Max) dw_chunks_ok = false;
            if (run + tap > kInt32Max) {
                dw_chunk_start.push_back(t);
                run = 0;
            }
            run += tap;
        }
        dw_chunk_start.push_back(w.taps);
    }
    if (!simd_ok || (w.depthwise && !dw_chunks_ok)) {
        (void)ctx;  // the scalar reference runs on the calling thread
        reference::conv2d<Round>(g, input, input_zero_point, w.ohwi.data(), rq, output);
        return;
    }
#if BPUQ_SIMD_HAS_AVX2
    constexpr int B = PackedConvWeights::kBlock;
    const int oh = g.out_h(), ow = g.out_w();
    const int padded_per_group =
        w.depthwise ? (g.out_c + B - 1) / B * B : w.blocks_per_group * B;
    // the generic output constants (AVX2 paths and int16 VNNI), made when a path needs them
    auto generic_constants = [&]() {
        return detail::output_constants<Round>(w, rq, w.depthwise ? 1 : g.groups,
                                               w.depthwise ? g.out_c : g.out_c_per_group(), padded_per_group);
    };
    // pairs per int32 partial in the wide path: 255 for int16 x int8, 1 for int16 x int16
    const int chunk_pairs = static_cast<int>(std::max<std::int64_t>(
        1, std::min<std::int64_t>(1 << 20, kInt32Max / std::max<std::int64_t>(1, 2 * max_abs_input * w.max_abs_weight))));

#if BPUQ_SIMD_HAS_AVX512_VNNI
    if (w.depthwise && simd_level<Arch> == Level::avx512_vnni) {
        if (sizeof(TIn) == 1 && !wide) {
            // ---- depthwise, AVX-512 VNNI, int8: the raw q sign-extended at each tap (vpmovsxbd from
            //      memory costs what a load costs), padding = zp, zp * sum w removed through the bias;
            //      eight output pixels share each weight register ----
            const int C = g.in_c, taps = w.taps, blocks = (C + B - 1) / B;
            std::vector<std::int32_t> bias(static_cast<std::size_t>(C));
            for (int c = 0; c < C; ++c)
                bias[static_cast<std::size_t>(c)] = static_cast<std::int32_t>(
                    static_cast<std::uint32_t>(rq.bias_of(static_cast<std::size_t>(c))) -
                    static_cast<std::uint32_t>(std::int64_t(input_zero_point) * w.weight_sum[static_cast<std::size_t>(c)]));
            Requantization rq_dw = rq;
            rq_dw.bias = bias.data();
            const auto kd_ptr = detail::output_constants<Round>(w, rq_dw, 1, C, blocks * B);
            const detail::OutputConstants& kd = *kd_ptr;
            std::unique_ptr<TIn[]> buf;
            int hp, wp;
            detail::pad_plain(ctx, g, input, static_cast<TIn>(input_zero_point), 0, buf, hp, wp);
            std::vector<std::ptrdiff_t> tap_off(static_cast<std::size_t>(taps));
            for (int t = 0; t < taps; ++t)
                tap_off[static_cast<std::size_t>(t)] =
                    (std::ptrdiff_t(t / g.kernel_w) * g.dilation_h * wp + std::ptrdiff_t(t % g.kernel_w) * g.dilation_w) * C;
            const std::ptrdiff_t ps = std::ptrdiff_t(g.stride_w) * C;
            parallel_for(ctx, std::int64_t(g.batch) * oh * blocks, [&](std::int64_t r0, std::int64_t r1) {
                const detail::OutputRegs16 kr(kd);
                for (std::int64_t item = r0; item < r1; ++item) {
                    const std::int64_t r = item / blocks;
                    const int b = static_cast<int>(item % blocks);
                    const int n = static_cast<int>(r / oh), oy = static_cast<int>(r % oh);
                    const int c0 = b * B, count = std::min(B, C - c0);
                    const std::int32_t* wv = &w.dw_dwords[static_cast<std::size_t>(b) * taps * B];
                    const TIn* row = buf.get() + (std::int64_t(n) * hp + std::int64_t(oy) * g.stride_h) * wp * C + c0;
                    TOut* out = output + (std::int64_t(n) * oh + oy) * ow * g.out_c + c0;
                    for (int ox = 0; ox < ow; ox += 8) {
                        const int mr = std::min(8, ow - ox);
                        __m512i acc[8][1];
                        detail::depthwise_tile_any<8>(mr, reinterpret_cast<const std::int8_t*>(row) + std::ptrdiff_t(ox) * ps, ps,
                                                      tap_off.data(), taps, wv, acc);
                        detail::stage_store_tile(acc, mr, 1, kr, c0, out + std::int64_t(ox) * g.out_c, g.out_c, count);
                    }
                }
            });
            return;
        }
        // ---- depthwise, AVX-512 VNNI, int16 activations (zero point 0) or int8 layers whose sums
        //      could leave int32: each tap is one vpdpwssd against weights packed as dwords (w, 0),
        //      on activations sign-extended to int32: the low word of the activation times w, the
        //      high word (sign bits) times 0. int16 activations are read raw from a padded copy and
        //      sign-extended at each tap (vpmovsxwd from memory costs what a load costs); int8
        //      activations of a wide layer are widened per work item (output row, 16 channels) to
        //      q - zp in a small per-thread int32 buffer [kernel_h][padded width][16]. Eight output
        //      pixels share each weight load. When the sums could leave int32 (wide), each chunk of
        //      taps of dw_chunk_start sums in int32 and the chunks are added in int64; the vector
        //      output stage runs where the sum and the sum plus bias fit int32, the reference stage
        //      elsewhere. ----
        const int C = g.in_c, taps = w.taps, blocks = (C + B - 1) / B;
        const auto kd_ptr = generic_constants();
        const detail::OutputConstants& kd = *kd_ptr;
        const int kh = g.kernel_h, kw = g.kernel_w;
        constexpr bool raw = sizeof(TIn) == 2;  // simd_ok: int16 activations have zero point 0
        std::unique_ptr<TIn[]> padded;
        int hp = 0, wp = g.in_w + g.pad_left + g.pad_right;
        if (raw) detail::pad_plain(ctx, g, input, TIn(0), 0, padded, hp, wp);
        // tap offsets in elements: raw rows of the padded copy, or the rows of the widened buffer
        std::vector<std::ptrdiff_t> tap_off(static_cast<std::size_t>(taps));
        for (int t = 0; t < taps; ++t)
            tap_off[static_cast<std::size_t>(t)] =
                raw ? (std::ptrdiff_t(t / kw) * g.dilation_h * wp + std::ptrdiff_t(t % kw) * g.dilation_w) * C
                    : (std::ptrdiff_t(t / kw) * wp + std::ptrdiff_t(t % kw) * g.dilation_w) * B;
        const std::ptrdiff_t pixel_stride = std::ptrdiff_t(g.stride_w) * (raw ? C : B);
        parallel_for(ctx, std::int64_t(g.batch) * oh * blocks, [&](std::int64_t r0, std::int64_t r1) {
            const detail::OutputRegs16 kr(kd);
            std::vector<std::int32_t> local(raw ? 0 : static_cast<std::size_t>(kh) * wp * B + B);
            const __m512i zp = _mm512_set1_epi32(input_zero_point);
            const __m512i i32_max = _mm512_set1_epi64(kInt32Max), i32_min = _mm512_set1_epi64(std::numeric_limits<std::int32_t>::min());
            auto outside = [&](__m512i v) { return _mm512_cmpgt_epi64_mask(v, i32_max) | _mm512_cmplt_epi64_mask(v, i32_min); };
            // one output row of 16 channels from activations at `origin` (int32 or raw int16)
            auto output_row = [&](const auto* origin, int c0, int count, const std::int32_t* wv, TOut* out) {
                if (!wide) {
                    for (int ox = 0; ox < ow; ox += 8) {
                        const int mr = std::min(8, ow - ox);
                        __m512i acc[8][1];
                        detail::depthwise_tile_any<8>(mr, origin + std::ptrdiff_t(ox) * pixel_stride, pixel_stride, tap_off.data(),
                                                      taps, wv, acc);
                        detail::stage_store_tile(acc, mr, 1, kr, c0, out + std::int64_t(ox) * g.out_c, g.out_c, count);
                    }
                    return;
                }
                alignas(64) std::int64_t bias64[B];
                for (int j = 0; j < B; ++j) bias64[j] = j < count ? rq.bias_of(static_cast<std::size_t>(c0 + j)) : 0;
                const __m512i bias_lo = _mm512_load_si512(bias64), bias_hi = _mm512_load_si512(bias64 + 8);
                for (int ox = 0; ox < ow; ox += 8) {
                    const int mr = std::min(8, ow - ox);
                    __m512i lo[8], hi[8];
                    for (int m = 0; m < 8; ++m) lo[m] = hi[m] = _mm512_setzero_si512();
                    for (std::size_t ch = 0; ch + 1 < dw_chunk_start.size(); ++ch) {
                        const int t0 = dw_chunk_start[ch], t1 = dw_chunk_start[ch + 1];
                        __m512i acc[8][1];
                        detail::depthwise_tile_any<8>(mr, origin + std::ptrdiff_t(ox) * pixel_stride, pixel_stride,
                                                      tap_off.data() + t0, t1 - t0, wv + std::ptrdiff_t(t0) * B, acc);
                        for (int m = 0; m < mr; ++m) {
                            lo[m] = _mm512_add_epi64(lo[m], _mm512_cvtepi32_epi64(_mm512_castsi512_si256(acc[m][0])));
                            hi[m] = _mm512_add_epi64(hi[m], _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(acc[m][0], 1)));
                        }
                    }
                    for (int m = 0; m < mr; ++m) {
                        TOut* o = out + std::int64_t(ox + m) * g.out_c;
                        if (outside(lo[m]) | outside(hi[m]) | outside(_mm512_add_epi64(lo[m], bias_lo)) |
                            outside(_mm512_add_epi64(hi[m], bias_hi))) {
                            alignas(64) std::int64_t sums[B];
                            _mm512_store_si512(sums, lo[m]);
                            _mm512_store_si512(sums + 8, hi[m]);
                            for (int j = 0; j < count; ++j)
                                o[j] = requantize_output<TOut, Round>(sums[j], rq, static_cast<std::size_t>(c0 + j));
                            continue;
                        }
                        const __m512i narrow = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(lo[m])),
                                                                  _mm512_cvtepi64_epi32(hi[m]), 1);
                        detail::store16_avx512(o, detail::stage16(narrow, kr, c0), count);
                    }
                }
            };
            for (std::int64_t item = r0; item < r1; ++item) {
                const std::int64_t r = item / blocks;
                const int b = static_cast<int>(item % blocks);
                const int n = static_cast<int>(r / oh), oy = static_cast<int>(r % oh);
                const int c0 = b * B, count = std::min(B, C - c0);
                const std::int32_t* wv = &w.dw_dwords[static_cast<std::size_t>(b) * taps * B];
                TOut* out = output + (std::int64_t(n) * oh + oy) * ow * g.out_c + c0;
                if (raw) {
                    output_row(padded.get() + (std::int64_t(n) * hp + std::int64_t(oy) * g.stride_h) * wp * C + c0, c0, count, wv, out);
                    continue;
                }
                const __mmask16 lanes = static_cast<__mmask16>((1u << count) - 1u);
                for (int ky = 0; ky < kh; ++ky) {
                    std::int32_t* dst = local.data() + static_cast<std::size_t>(ky) * wp * B;
                    const int iy = oy * g.stride_h - g.pad_top + ky * g.dilation_h;
                    if (iy < 0 || iy >= g.in_h) {
                        std::memset(dst, 0, static_cast<std::size_t>(wp) * B * sizeof(std::int32_t));
                        continue;
                    }
                    std::memset(dst, 0, static_cast<std::size_t>(g.pad_left) * B * sizeof(std::int32_t));
                    std::memset(dst + std::ptrdiff_t(g.pad_left + g.in_w) * B, 0,
                                static_cast<std::size_t>(g.pad_right) * B * sizeof(std::int32_t));
                    const TIn* src = input + (std::int64_t(n) * g.in_h + iy) * g.in_w * C + c0;
                    std::int32_t* d = dst + std::ptrdiff_t(g.pad_left) * B;
                    for (int ix = 0; ix < g.in_w; ++ix, src += C, d += B) {
                        const __m512i a = _mm512_maskz_cvtepi8_epi32(lanes, _mm_maskz_loadu_epi8(lanes, src));
                        _mm512_storeu_si512(d, _mm512_sub_epi32(a, zp));
                    }
                }
                output_row(local.data(), c0, count, wv, out);
            }
        });
        return;
    }
#endif
    if (w.depthwise) {
        // ---- depthwise: 16 channels per step, taps in pairs interleaved for vpmaddwd ----
        const auto k_ptr = generic_constants();
        const detail::OutputConstants& k = *k_ptr;
        std::unique_ptr<std::int16_t[]> plain;
        int hp, wp;
        detail::pad_plain(ctx, g, input, std::int16_t(0), input_zero_point, plain, hp, wp);
        const int C = g.in_c;
        const int taps = w.taps, tap_pairs = w.tap_pairs, blocks = (C + B - 1) / B;
        std::vector<std::ptrdiff_t> tap_off(static_cast<std::size_t>(2 * tap_pairs));
        for (int t = 0; t < 2 * tap_pairs; ++t) {
            const int tt = std::min(t, taps - 1);  // the padding tap reads a real tap, weight 0
            tap_off[static_cast<std::size_t>(t)] =
                (std::ptrdiff_t(tt / g.kernel_w) * g.dilation_h * wp + std::ptrdiff_t(tt % g.kernel_w) * g.dilation_w) * C;
        }
        parallel_for(ctx, std::int64_t(g.batch) * oh, [&](std::int64_t r0, std::int64_t r1) {
            for (std::int64_t r = r0; r < r1; ++r) {
                const int n = static_cast<int>(r / oh), oy = static_cast<int>(r % oh);
                for (int b = 0; b < blocks; ++b) {
                    const int c0 = b * B, count = std::min(B, C - c0);
                    const std::int16_t* wb = w.data.data() + static_cast<std::size_t>(b) * tap_pairs * B * 2;
                    for (int ox = 0; ox < ow; ++ox) {
                        const std::int16_t* origin =
                            plain.get() + ((std::int64_t(n) * hp + std::int64_t(oy) * g.stride_h) * wp +
                                            std::int64_t(ox) * g.stride_w) * C + c0;
                        __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
                        for (int tp = 0; tp < tap_pairs; ++tp) {
                            const __m128i a0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(origin + tap_off[2 * tp]));
                            const __m128i a1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(origin + tap_off[2 * tp + 1]));
                            const __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(origin + tap_off[2 * tp] + 8));
                            const __m128i b1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(origin + tap_off[2 * tp + 1] + 8));
                            const __m256i lo = _mm256_set_m128i(_mm_unpackhi_epi16(a0, a1), _mm_unpacklo_epi16(a0, a1));
                            const __m256i hi = _mm256_set_m128i(_mm_unpackhi_epi16(b0, b1), _mm_unpacklo_epi16(b0, b1));
                            const std::int16_t* wt = wb + static_cast<std::size_t>(tp) * B * 2;
                            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(lo, detail::load256(wt)));
                            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(hi, detail::load256(wt + 16)));
                        }
                        TOut* out = output + ((std::int64_t(n) * oh + oy) * ow + ox) * g.out_c + c0;
                        detail::store16(out, detail::stage8(acc0, k, c0),
                                            detail::stage8(acc1, k, c0 + 8), count);
                    }
                }
            }
        });
        return;
    }


#if BPUQ_SIMD_HAS_AVX512_VNNI
    if (simd_level<Arch> == Level::avx512_vnni && sizeof(TIn) == 1 && !w.depthwise && !w.data_s8.empty() && !wide) {
        // ---- AVX-512 VNNI: u8 (q + 128) x s8 weights; the offset is removed through the bias:
        //      sum (q - zp) w = sum (q + 128) w - (zp + 128) sum w ----
        std::vector<std::int32_t> bias(static_cast<std::size_t>(g.out_c));
        for (int c = 0; c < g.out_c; ++c)
            bias[static_cast<std::size_t>(c)] = static_cast<std::int32_t>(
                static_cast<std::uint32_t>(rq.bias_of(static_cast<std::size_t>(c))) -
                static_cast<std::uint32_t>(std::int64_t(input_zero_point + 128) * w.weight_sum[static_cast<std::size_t>(c)]));
        Requantization rq_u8 = rq;
        rq_u8.bias = bias.data();
        const auto k8_ptr = detail::output_constants<Round>(w, rq_u8, g.groups, g.out_c_per_group(), w.blocks32_per_group * 32);
        const detail::OutputConstants& k8 = *k8_ptr;
        std::unique_ptr<std::uint8_t[]> buf;
        int hp, wp, cs;
        detail::offset_and_pad_u8(ctx, g, input, input_zero_point, w.quads, buf, hp, wp, cs);
        const int taps = w.taps, quads = w.quads, cog = g.out_c_per_group();
        std::vector<std::ptrdiff_t> tap_off(static_cast<std::size_t>(taps));
        for (int t = 0; t < taps; ++t)
            tap_off[static_cast<std::size_t>(t)] =
                (std::ptrdiff_t(t / g.kernel_w) * g.dilation_h * wp + std::ptrdiff_t(t % g.kernel_w) * g.dilation_w) * cs;
        const detail::TilePlan plan(g, taps, quads, cs);
        const std::ptrdiff_t pixel_stride = plan.pixel_stride;
        const std::size_t block_weights = static_cast<std::size_t>(taps) * quads * 128;
        parallel_for(ctx, plan.items, [&](std::int64_t i0, std::int64_t i1) {
            const detail::OutputRegs16 kr(k8);
            for (std::int64_t item = i0; item < i1; ++item) {
                const detail::TilePlan::Item it = plan.item(item, g);
                const int grp = it.grp, vec0 = it.vec0, nb = it.nb;
                const int co0 = grp * cog + vec0 * 16, count = std::min(16 * nb, cog - vec0 * 16);
                const int v0 = grp * w.blocks32_per_group * 32 + vec0 * 16;
                const std::int8_t* wb =
                    w.data_s8.data() + (static_cast<std::size_t>(grp) * w.blocks32_per_group + vec0 / 2) * block_weights;
                const std::uint8_t* row_origin =
                    buf.get() + (std::int64_t(it.n) * hp + std::int64_t(it.oy) * g.stride_h) * wp * cs + grp * 4 * quads;
                TOut* row_out = output + (std::int64_t(it.n) * oh + it.oy) * ow * g.out_c + co0;
                for (int p = it.p_begin; p < it.p_end; p += plan.tile_mr) {
                    const int mr = std::min(plan.tile_mr, it.p_end - p);
                    const std::uint8_t* origin = row_origin + std::ptrdiff_t(p) * pixel_stride;
                    __m512i acc[8][4];
                    const std::ptrdiff_t* toff = tap_off.data();
                    if (plan.tile_nb == 4) {
                        switch (nb) {
                            case 4: detail::vnni_tile_any<6, 4>(mr, origin, pixel_stride, toff, taps, quads, wb, block_weights, acc); break;
                            case 3: detail::vnni_tile_any<6, 3>(mr, origin, pixel_stride, toff, taps, quads, wb, block_weights, acc); break;
                            case 2: detail::vnni_tile_any<6, 2>(mr, origin, pixel_stride, toff, taps, quads, wb, block_weights, acc); break;
                            default: detail::vnni_tile_any<6, 1>(mr, origin, pixel_stride, toff, taps, quads, wb, block_weights, acc); break;
                        }
                    } else if (nb == 2) {
                        detail::vnni_tile_any<8, 2>(mr, origin, pixel_stride, toff, taps, quads, wb, block_weights, acc);
                    } else {
                        detail::vnni_tile_any<8, 1>(mr, origin, pixel_stride, toff, taps, quads, wb, block_weights, acc);
                    }
                    detail::stage_store_tile(acc, mr, nb, kr, v0, row_out + std::int64_t(p) * g.out_c, g.out_c, count);
                }
            }
        });
        return;
    }
#endif


#if BPUQ_SIMD_HAS_AVX512_VNNI
    // ---- AVX-512 VNNI, int16 activations, int16 weights or int8 layers whose sums could leave
    //      int32: vpdpwssd on the int16 packing ((q - zp) widened to int16); taps are grouped into
    //      chunks whose partial sums provably fit int32 (max |q - zp| * sum of the chunk's max
    //      per-tap sum |w|), chunk partials added in int64 ----
    if (simd_level<Arch> == Level::avx512_vnni && (sizeof(TIn) == 2 || w.data_s8.empty() || wide) && !w.depthwise) {
        std::vector<int> chunk_start{0};
        bool splittable = true;
        {
            std::int64_t run = 0;
            for (int t = 0; t < w.taps; ++t) {
                const std::int64_t tap = max_abs_input * w.tap_abs_sum[static_cast<std::size_t>(t)];
                if (tap > kInt32Max) splittable = false;
                if (run + tap > kInt32Max) {
                    chunk_start.push_back(t);
                    run = 0;
                }
                run += tap;
            }
            chunk_start.push_back(w.taps);
        }
        if (splittable) {
            const auto k_ptr = generic_constants();
            const detail::OutputConstants& k = *k_ptr;
            const bool single_chunk = chunk_start.size() == 2 && !wide;
            std::unique_ptr<std::int16_t[]> buf;
            int hp, wp, cs;
            detail::widen_and_pad(ctx, g, input, input_zero_point, w.cpairs, buf, hp, wp, cs);
            const int taps = w.taps, cpairs = w.cpairs, cog = g.out_c_per_group(), bpg = w.blocks_per_group;
            std::vector<std::ptrdiff_t> tap_off(static_cast<std::size_t>(taps));
            for (int t = 0; t < taps; ++t)
                tap_off[static_cast<std::size_t>(t)] =
                    (std::ptrdiff_t(t / g.kernel_w) * g.dilation_h * wp + std::ptrdiff_t(t % g.kernel_w) * g.dilation_w) * cs;
            const detail::TilePlan plan(g, taps, cpairs, cs);
            const std::ptrdiff_t pixel_stride = plan.pixel_stride;
            const std::size_t block_weights = static_cast<std::size_t>(taps) * cpairs * B * 2;
            parallel_for(ctx, plan.items, [&](std::int64_t i0, std::int64_t i1) {
                const detail::OutputRegs16 kr(k);
                std::vector<std::int64_t> sums(single_chunk ? 0 : 8 * 64);
                for (std::int64_t item = i0; item < i1; ++item) {
                    const detail::TilePlan::Item it = plan.item(item, g);
                    const int grp = it.grp, vec0 = it.vec0, nb = it.nb;
                    const int co0 = grp * cog + vec0 * B, count = std::min(B * nb, cog - vec0 * B);
                    const int v0 = (grp * bpg + vec0) * B;
                    const std::int16_t* wb = w.data.data() + (static_cast<std::size_t>(grp) * bpg + vec0) * block_weights;
                    const std::int16_t* row_origin =
                        buf.get() + (std::int64_t(it.n) * hp + std::int64_t(it.oy) * g.stride_h) * wp * cs + grp * 2 * cpairs;
                    TOut* row_out = output + (std::int64_t(it.n) * oh + it.oy) * ow * g.out_c + co0;
                    for (int p = it.p_begin; p < it.p_end; p += plan.tile_mr) {
                        const int mr = std::min(plan.tile_mr, it.p_end - p);
                        const std::int16_t* origin = row_origin + std::ptrdiff_t(p) * pixel_stride;
                        TOut* out = row_out + std::int64_t(p) * g.out_c;
                        __m512i acc[8][4];
                        if (!single_chunk) std::fill(sums.begin(), sums.end(), 0);
                        for (std::size_t c = 0; c + 1 < chunk_start.size(); ++c) {
                            const int t0 = chunk_start[c], t1 = chunk_start[c + 1];
                            const std::ptrdiff_t* toff = tap_off.data();
                            if (plan.tile_nb == 4) {
                                switch (nb) {
                                    case 4: detail::vnni16_tile_any<6, 4>(mr, origin, pixel_stride, toff, t0, t1, cpairs, wb, block_weights, acc); break;
                                    case 3: detail::vnni16_tile_any<6, 3>(mr, origin, pixel_stride, toff, t0, t1, cpairs, wb, block_weights, acc); break;
                                    case 2: detail::vnni16_tile_any<6, 2>(mr, origin, pixel_stride, toff, t0, t1, cpairs, wb, block_weights, acc); break;
                                    default: detail::vnni16_tile_any<6, 1>(mr, origin, pixel_stride, toff, t0, t1, cpairs, wb, block_weights, acc); break;
                                }
                            } else if (nb == 2) {
                                detail::vnni16_tile_any<8, 2>(mr, origin, pixel_stride, toff, t0, t1, cpairs, wb, block_weights, acc);
                            } else {
                                detail::vnni16_tile_any<8, 1>(mr, origin, pixel_stride, toff, t0, t1, cpairs, wb, block_weights, acc);
                            }
                            if (single_chunk) break;
                            for (int m = 0; m < mr; ++m)
                                for (int h = 0; h < nb; ++h) {
                                    alignas(64) std::int32_t part[16];
                                    _mm512_store_si512(part, acc[m][h]);
                                    for (int j = 0; j < 16; ++j) sums[static_cast<std::size_t>((m * 4 + h) * 16 + j)] += part[j];
                                }
                        }
                        if (single_chunk) {
                            detail::stage_store_tile(acc, mr, nb, kr, v0, out, g.out_c, count);
                            continue;
                        }
                        // int64 sums over chunks: the vector stage when every sum (and sum + bias)
                        // fits int32, as it almost always does; the reference stage otherwise
                        for (int m = 0; m < mr; ++m)
                            for (int h = 0; h < nb && 16 * h < count; ++h) {
                                const int ch0 = co0 + 16 * h, cnt = std::min(B, count - 16 * h);
                                TOut* o = out + std::int64_t(m) * g.out_c + 16 * h;
                                const std::int64_t* sm = &sums[static_cast<std::size_t>((m * 4 + h) * 16)];
                                bool fits = true;
                                alignas(64) std::int32_t narrow[16];
                                for (int j = 0; j < 16; ++j) {
                                    const std::int64_t wb_ = sm[j] + (j < cnt ? rq.bias_of(static_cast<std::size_t>(ch0 + j)) : 0);
                                    fits = fits && sm[j] >= std::numeric_limits<std::int32_t>::min() && sm[j] <= kInt32Max &&
                                           wb_ >= std::numeric_limits<std::int32_t>::min() && wb_ <= kInt32Max;
                                    narrow[j] = static_cast<std::int32_t>(sm[j]);
                                }
                                if (!fits) {
                                    for (int j = 0; j < cnt; ++j)
                                        o[j] = requantize_output<TOut, Round>(sm[j], rq, static_cast<std::size_t>(ch0 + j));
                                    continue;
                                }
                                detail::store16_avx512(o, detail::stage16(_mm512_load_si512(narrow), kr, v0 + 16 * h), cnt);
                            }
                    }
                }
            });
            return;
        }
    }
#endif

    // ---- dense / grouped ----
    const auto k_ptr = generic_constants();
    const detail::OutputConstants& k = *k_ptr;
    std::unique_ptr<std::int16_t[]> buf;
    int hp, wp, cs;
    detail::widen_and_pad(ctx, g, input, input_zero_point, w.cpairs, buf, hp, wp, cs);
    const int taps = w.taps, cpairs = w.cpairs, cog = g.out_c_per_group();
    std::vector<std::ptrdiff_t> tap_off(static_cast<std::size_t>(taps));
    for (int t = 0; t < taps; ++t)
        tap_off[static_cast<std::size_t>(t)] =
            (std::ptrdiff_t(t / g.kernel_w) * g.dilation_h * wp + std::ptrdiff_t(t % g.kernel_w) * g.dilation_w) * cs;
    const std::ptrdiff_t pixel_stride = std::ptrdiff_t(g.stride_w) * cs;
    const std::int64_t blocks = std::int64_t(g.groups) * w.blocks_per_group;
    const std::size_t block_weights = static_cast<std::size_t>(taps) * cpairs * B * 2;
    // work item = (output row, channel block): rows outer so that threads split rows
    parallel_for(ctx, std::int64_t(g.batch) * oh * blocks, [&](std::int64_t i0, std::int64_t i1) {
        std::vector<std::int64_t> wide_acc(wide ? 6 * B : 0);
        for (std::int64_t item = i0; item < i1; ++item) {
            const std::int64_t row = item / blocks;
            const int blk = static_cast<int>(item % blocks);
            const int n = static_cast<int>(row / oh), oy = static_cast<int>(row % oh);
            const int grp = blk / w.blocks_per_group, b = blk % w.blocks_per_group;
            const int co0 = grp * cog + b * B, count = std::min(B, cog - b * B);
            const int v0 = blk * B;  // virtual channel of the output-stage constants
            const std::int16_t* wb = w.data.data() + static_cast<std::size_t>(blk) * block_weights;
            const std::int16_t* row_origin =
                buf.get() + (std::int64_t(n) * hp + std::int64_t(oy) * g.stride_h) * wp * cs + grp * 2 * cpairs;
            for (int ox = 0; ox < ow; ox += 6) {
                const int mr = std::min(6, ow - ox);
                const std::int16_t* origin = row_origin + std::ptrdiff_t(ox) * pixel_stride;
                __m256i acc[6][2];
                for (auto& a : acc) a[0] = a[1] = _mm256_setzero_si256();
                auto run = [&](const std::ptrdiff_t* toff, int ntaps, int pb, int pe, const std::int16_t* wp_) {
                    switch (mr) {
                        case 6: detail::dense_tile<6>(origin, pixel_stride, toff, ntaps, pb, pe, wp_, acc); break;
                        case 5: detail::dense_tile<5>(origin, pixel_stride, toff, ntaps, pb, pe, wp_, acc); break;
                        case 4: detail::dense_tile<4>(origin, pixel_stride, toff, ntaps, pb, pe, wp_, acc); break;
                        case 3: detail::dense_tile<3>(origin, pixel_stride, toff, ntaps, pb, pe, wp_, acc); break;
                        case 2: detail::dense_tile<2>(origin, pixel_stride, toff, ntaps, pb, pe, wp_, acc); break;
                        default: detail::dense_tile<1>(origin, pixel_stride, toff, ntaps, pb, pe, wp_, acc); break;
                    }
                };
                TOut* out = output + ((std::int64_t(n) * oh + oy) * ow + ox) * g.out_c + co0;
                if (!wide) {
                    run(tap_off.data(), taps, 0, cpairs, wb);
                    for (int m = 0; m < mr; ++m) {
                        detail::store16(out + std::int64_t(m) * g.out_c, detail::stage8(acc[m][0], k, v0),
                                            detail::stage8(acc[m][1], k, v0 + 8), count);
                    }
                    continue;
                }
                // int16 activations whose sums may leave int32: int32 partials over chunks of at
                // most chunk_pairs pairs, accumulated in int64
                std::fill(wide_acc.begin(), wide_acc.end(), 0);
                auto spill = [&]() {
                    for (int m = 0; m < mr; ++m) {
                        alignas(32) std::int32_t part[16];
                        _mm256_store_si256(reinterpret_cast<__m256i*>(part), acc[m][0]);
                        _mm256_store_si256(reinterpret_cast<__m256i*>(part + 8), acc[m][1]);
                        for (int j = 0; j < B; ++j) wide_acc[static_cast<std::size_t>(m * B + j)] += part[j];
                        acc[m][0] = acc[m][1] = _mm256_setzero_si256();
                    }
                };
                if (cpairs <= chunk_pairs) {  // whole taps per int32 partial
                    const int taps_per_chunk = chunk_pairs / cpairs;
                    for (int t0 = 0; t0 < taps; t0 += taps_per_chunk) {
                        run(&tap_off[static_cast<std::size_t>(t0)], std::min(taps_per_chunk, taps - t0), 0, cpairs,
                            wb + static_cast<std::size_t>(t0) * cpairs * B * 2);
                        spill();
                    }
                } else {
                    for (int t = 0; t < taps; ++t)
                        for (int pb = 0; pb < cpairs; pb += chunk_pairs) {
                            const int pe = std::min(cpairs, pb + chunk_pairs);
                            run(&tap_off[static_cast<std::size_t>(t)], 1, pb, pe,
                                wb + (static_cast<std::size_t>(t) * cpairs + pb) * B * 2);
                            spill();
                        }
                }
                // the vector output stage when every sum (and sum + bias) fits int32, as it
                // almost always does; the reference stage per element otherwise
                for (int m = 0; m < mr; ++m) {
                    const std::int64_t* sums = &wide_acc[static_cast<std::size_t>(m * B)];
                    bool fits = true;
                    alignas(32) std::int32_t narrow[16];
                    for (int j = 0; j < B; ++j) {
                        const std::int64_t with_bias = sums[j] + (j < count ? rq.bias_of(static_cast<std::size_t>(co0 + j)) : 0);
                        fits = fits && sums[j] >= std::numeric_limits<std::int32_t>::min() &&
                               sums[j] <= std::numeric_limits<std::int32_t>::max() &&
                               with_bias >= std::numeric_limits<std::int32_t>::min() &&
                               with_bias <= std::numeric_limits<std::int32_t>::max();
                        narrow[j] = static_cast<std::int32_t>(sums[j]);
                    }
                    TOut* o = out + std::int64_t(m) * g.out_c;
                    if (fits) {
                        const __m256i a0 = detail::load256(narrow), a1 = detail::load256(narrow + 8);
                        detail::store16(o, detail::stage8(a0, k, v0),
                                            detail::stage8(a1, k, v0 + 8), count);
                    } else {
                        for (int j = 0; j < count; ++j)
                            o[j] = requantize_output<TOut, Round>(sums[j], rq, static_cast<std::size_t>(co0 + j));
                    }
                }
            }
        }
    });
#endif
}

/// C[M][N] = requantize((A - zp_a) B^T) with B packed by pack_gemm_weights; equals reference::gemm.
template <class Arch = default_arch, class Round = RoundHalfAwayFromZero, class TA, class TOut>
inline void gemm(const KernelContext& ctx, const GemmGeometry& gg, const TA* a, std::int32_t zp_a,
                 const PackedConvWeights& b, const Requantization& rq, TOut* c) {
    gg.validate();
    Conv2dGeometry g;
    g.in_w = gg.m;  // M rows of A are M pixels of a 1 x M image
    g.in_c = gg.k;
    g.out_c = gg.n;
    BPUQ_CHECK(b.matches(g), "kernels.gemm",
               "gemm N " + std::to_string(gg.n) + ", K " + std::to_string(gg.k) + ": the packed weights were made for " +
                   b.geometry.to_string());
    conv2d<Arch, Round>(ctx, g, a, zp_a, b, rq, c);
}

/// The output stage of conv2d / gemm alone, on `pixels` rows of `channels` int32 accumulators
/// (row-major): out[p][c] = requantize_output(acc[p][c], rq, c). Equals the reference bit for bit;
/// it is the same vector code the AVX-512 convolutions run, exposed for tests and callers with
/// their own accumulators.
template <class Arch = default_arch, class Round = RoundHalfAwayFromZero, class TOut>
inline void requantize_accumulators(const std::int32_t* acc, std::int64_t pixels, int channels, const Requantization& rq,
                                    TOut* out) {
    static_assert(is_output_type<TOut>, "bpuq: the output stage writes int8, int16 or int32");
#if BPUQ_SIMD_HAS_AVX512_VNNI
    if constexpr (simd_level<Arch> == Level::avx512_vnni) {
        const int padded = (channels + 15) / 16 * 16;
        const detail::OutputConstants k(rq, 1, channels, padded, Round{});
        const detail::OutputRegs16 kr(k);
        for (std::int64_t p = 0; p < pixels; ++p)
            for (int c0 = 0; c0 < channels; c0 += 16) {
                const int count = std::min(16, channels - c0);
                const __m512i v = _mm512_maskz_loadu_epi32(static_cast<__mmask16>((1u << count) - 1u), acc + p * channels + c0);
                detail::store16_avx512(out + p * channels + c0, detail::stage16(v, kr, c0), count);
            }
        return;
    }
#endif
#if BPUQ_SIMD_HAS_AVX2
    if constexpr (simd_level<Arch> == Level::avx2) {
        const int padded = (channels + 15) / 16 * 16;
        const detail::OutputConstants k(rq, 1, channels, padded, Round{});
        alignas(32) std::int32_t tmp[16];
        for (std::int64_t p = 0; p < pixels; ++p)
            for (int c0 = 0; c0 < channels; c0 += 16) {
                const int count = std::min(16, channels - c0);
                std::fill(tmp, tmp + 16, 0);
                std::copy(acc + p * channels + c0, acc + p * channels + c0 + count, tmp);
                detail::store16(out + p * channels + c0, detail::stage8(detail::load256(tmp), k, c0),
                                detail::stage8(detail::load256(tmp + 8), k, c0 + 8), count);
            }
        return;
    }
#endif
    for (std::int64_t p = 0; p < pixels; ++p)
        for (int c = 0; c < channels; ++c)
            out[p * channels + c] = requantize_output<TOut, Round>(acc[p * channels + c], rq, static_cast<std::size_t>(c));
}

/// Whether the 32-bit output stage (docs/ARITHMETIC.md) applies to these parameters on the
/// AVX-512 paths (false: the 64-bit stage runs; both are exact). For tests and benchmarks.
template <class Round = RoundHalfAwayFromZero>
inline bool fast_output_stage_applies(const Requantization& rq, int channels) {
#if BPUQ_SIMD_HAS_AVX2
    return detail::OutputConstants(rq, 1, channels, (channels + 15) / 16 * 16, Round{}).fast;
#else
    (void)rq;
    (void)channels;
    return false;
#endif
}

}  // namespace simd
BPUQ_NAMESPACE_END
