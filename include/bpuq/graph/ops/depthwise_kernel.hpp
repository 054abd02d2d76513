// AVX-512 depthwise 2-D float convolution (strides 1 and 2, any kernel, dilation and
// padding) with the bias and the Relu/Clip clamp fused into the store.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "../../core/config.hpp"
#include "../context.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {
namespace ops {
namespace depthwise_avx512 {

/// Geometry the kernel needs (2-D only); filled by the caller from its ConvShape.
struct DepthwiseGeometry {
    std::int64_t planes = 0;  // N * C
    std::int64_t channels = 0;
    std::int64_t H = 0, W = 0, KH = 0, KW = 0, OH = 0, OW = 0;
    std::int64_t SH = 1, SW = 1, DH = 1, DW = 1, PH = 0, PW = 0;
};

/// True when this kernel handles the geometry (it vectorizes along the output width, which
/// needs unit or stride-2 steps through the input row).
inline bool suits(const DepthwiseGeometry& g) {
#if defined(__AVX512F__)
    return (g.SW == 1 || g.SW == 2) && g.PH >= 0 && g.PW >= 0;
#else
    return (void)g, false;
#endif
}

#if defined(__AVX512F__)
constexpr int kLanes = 16;

/// Input row of 16 output pixels for one tap: consecutive values (stride 1) or every
/// second value (stride 2, two loads and an even-lane permute).
template <int SW>
inline __m512 load_tap(const float* p) {
    if (SW == 1) return _mm512_loadu_ps(p);
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), even, _mm512_loadu_ps(p + kLanes));
}

/// R output rows at once for one 16-wide column chunk: R independent accumulators hide the
/// FMA latency that a single chain of KH*KW taps would expose.
template <int SW, int R>
inline void rows_chunk(const float* plane, std::int64_t row_stride, std::int64_t oh, std::int64_t ow0, const float* wc,
                       float b0, const DepthwiseGeometry& g, float lo, float hi, float* yc) {
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_set1_ps(b0);
    for (std::int64_t kh = 0; kh < g.KH; ++kh) {
        const float* base = plane + (oh * g.SH + kh * g.DH) * row_stride + ow0 * SW;
        for (std::int64_t kw = 0; kw < g.KW; ++kw) {
            const __m512 wv = _mm512_set1_ps(wc[kh * g.KW + kw]);
            const float* p = base + kw * g.DW;
            for (int r = 0; r < R; ++r)
                acc[r] = _mm512_fmadd_ps(load_tap<SW>(p + r * g.SH * row_stride), wv, acc[r]);
        }
    }
    const std::int64_t left = g.OW - ow0;
    const __mmask16 mask = left >= kLanes ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    for (int r = 0; r < R; ++r)
        _mm512_mask_storeu_ps(yc + (oh + r) * g.OW + ow0, mask, _mm512_min_ps(vhi, _mm512_max_ps(vlo, acc[r])));
}

/// The common 3x3 undilated case with every tap unrolled and the 9 weights in registers:
/// R output rows at once, each row's 9 multiply-adds interleaved with the other rows'.
template <int SW, int R>
inline void rows_chunk_3x3(const float* plane, std::int64_t row_stride, std::int64_t oh, std::int64_t ow0,
                           const __m512 (&wv)[9], __m512 b0, const DepthwiseGeometry& g, __m512 lo, __m512 hi,
                           float* yc) {
    __m512 acc[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[r] = b0;
#pragma GCC unroll 3
    for (int kh = 0; kh < 3; ++kh)
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
            const float* p = plane + ((oh + r) * g.SH + kh) * row_stride + ow0 * SW;
            acc[r] = _mm512_fmadd_ps(load_tap<SW>(p), wv[kh * 3], acc[r]);
            acc[r] = _mm512_fmadd_ps(load_tap<SW>(p + 1), wv[kh * 3 + 1], acc[r]);
            acc[r] = _mm512_fmadd_ps(load_tap<SW>(p + 2), wv[kh * 3 + 2], acc[r]);
        }
    const std::int64_t left = g.OW - ow0;
    const __mmask16 mask = left >= kLanes ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r)
        _mm512_mask_storeu_ps(yc + (oh + r) * g.OW + ow0, mask, _mm512_min_ps(hi, _mm512_max_ps(lo, acc[r])));
}

template <int SW>
inline void channel_3x3(const float* plane, std::int64_t row_stride, const float* wc, float b0,
                        const DepthwiseGeometry& g, float lo, float hi, float* yc) {
    constexpr int kRows = 6;
    __m512 wv[9];
    for (int t = 0; t < 9; ++t) wv[t] = _mm512_set1_ps(wc[t]);
    const __m512 vb = _mm512_set1_ps(b0), vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    for (std::int64_t ow0 = 0; ow0 < g.OW; ow0 += kLanes) {
        std::int64_t oh = 0;
        for (; oh + kRows <= g.OH; oh += kRows) rows_chunk_3x3<SW, kRows>(plane, row_stride, oh, ow0, wv, vb, g, vlo, vhi, yc);
        switch (g.OH - oh) {
            case 5: rows_chunk_3x3<SW, 5>(plane, row_stride, oh, ow0, wv, vb, g, vlo, vhi, yc); break;
            case 4: rows_chunk_3x3<SW, 4>(plane, row_stride, oh, ow0, wv, vb, g, vlo, vhi, yc); break;
            case 3: rows_chunk_3x3<SW, 3>(plane, row_stride, oh, ow0, wv, vb, g, vlo, vhi, yc); break;
            case 2: rows_chunk_3x3<SW, 2>(plane, row_stride, oh, ow0, wv, vb, g, vlo, vhi, yc); break;
            case 1: rows_chunk_3x3<SW, 1>(plane, row_stride, oh, ow0, wv, vb, g, vlo, vhi, yc); break;
            default: break;
        }
    }
}

template <int SW>
inline void channel(const float* plane, std::int64_t row_stride, const float* wc, float b0, const DepthwiseGeometry& g,
                    float lo, float hi, float* yc) {
    constexpr int kRows = 4;
    for (std::int64_t ow0 = 0; ow0 < g.OW; ow0 += kLanes) {
        std::int64_t oh = 0;
        for (; oh + kRows <= g.OH; oh += kRows) rows_chunk<SW, kRows>(plane, row_stride, oh, ow0, wc, b0, g, lo, hi, yc);
        switch (g.OH - oh) {
            case 3: rows_chunk<SW, 3>(plane, row_stride, oh, ow0, wc, b0, g, lo, hi, yc); break;
            case 2: rows_chunk<SW, 2>(plane, row_stride, oh, ow0, wc, b0, g, lo, hi, yc); break;
            case 1: rows_chunk<SW, 1>(plane, row_stride, oh, ow0, wc, b0, g, lo, hi, yc); break;
            default: break;
        }
    }
}
#endif

/// y[plane] = clamp(sum of taps + bias[channel], lo, hi) for every plane (image x channel).
/// Each input plane is copied into a zero-bordered buffer whose rows are long enough for the
/// last (masked) vector of every output row, so the inner loops have no bounds checks.
inline void conv2d(const float* x, const float* w, const float* bias, float* y, const DepthwiseGeometry& g, float lo,
                   float hi, const ExecContext& ctx) {
#if defined(__AVX512F__)
    const std::int64_t OWv = (g.OW + kLanes - 1) / kLanes * kLanes;
    const std::int64_t row_stride = std::max(g.W + g.PW, g.SW * OWv + (g.KW - 1) * g.DW);
    const std::int64_t rows = std::max(g.H + g.PH, (g.OH - 1) * g.SH + (g.KH - 1) * g.DH + 1);
    const bool is_3x3 = g.KH == 3 && g.KW == 3 && g.DH == 1 && g.DW == 1;
    ctx.parallel_for(g.planes, 1, [&](std::int64_t b, std::int64_t e) {
        // borders stay zero: every plane writes the same interior
        std::vector<float> plane(static_cast<std::size_t>(rows * row_stride), 0.f);
        for (std::int64_t p = b; p < e; ++p) {
            const std::int64_t c = p % g.channels;
            const float* xc = x + p * g.H * g.W;
            for (std::int64_t h = 0; h < g.H; ++h)
                std::copy(xc + h * g.W, xc + (h + 1) * g.W, plane.data() + (h + g.PH) * row_stride + g.PW);
            const float* wc = w + c * g.KH * g.KW;
            const float b0 = bias ? bias[c] : 0.f;
            float* yc = y + p * g.OH * g.OW;
            if (is_3x3 && g.SW == 1) channel_3x3<1>(plane.data(), row_stride, wc, b0, g, lo, hi, yc);
            else if (is_3x3) channel_3x3<2>(plane.data(), row_stride, wc, b0, g, lo, hi, yc);
            else if (g.SW == 1) channel<1>(plane.data(), row_stride, wc, b0, g, lo, hi, yc);
            else channel<2>(plane.data(), row_stride, wc, b0, g, lo, hi, yc);
        }
    });
#else
    (void)x, (void)w, (void)bias, (void)y, (void)g, (void)lo, (void)hi, (void)ctx;
#endif
}

}  // namespace depthwise_avx512
}  // namespace ops
}  // namespace graph

BPUQ_NAMESPACE_END
