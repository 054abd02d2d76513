// Convolutions: Conv (1x1 / im2col / shifted-row GEMMs, direct depthwise), ConvTranspose (GEMM +
// col2im), and the integer forms ConvInteger / QLinearConv (exact int32 accumulation).
#pragma once

#include <Eigen/Core>

#include <cmath>
#include <limits>
#include <type_traits>

#include "common.hpp"
#include "depthwise_kernel.hpp"
#include "gemm_kernel.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {
namespace ops {

/// An activation applied in the convolution's epilogue (set by the Conv+Relu/Clip fusion
/// pass through the bpuq_activation / bpuq_clip_min / bpuq_clip_max attributes).
struct Epilogue {
    float lo = -std::numeric_limits<float>::infinity();
    float hi = std::numeric_limits<float>::infinity();
    bool active() const { return std::isfinite(lo) || std::isfinite(hi); }
};
inline Epilogue conv_epilogue(const Node& n) {
    Epilogue e;
    const std::string act = n.attr_string("bpuq_activation", "");
    if (act == "Relu") e.lo = 0.f;
    else if (act == "Clip") {
        e.lo = n.attr_float("bpuq_clip_min", e.lo);
        e.hi = n.attr_float("bpuq_clip_max", e.hi);
    } else
        BPUQ_CHECK(act.empty(), "graph.attribute", n.describe() + " bpuq_activation '" + act + "'; allowed: Relu, Clip");
    return e;
}

/// Geometry of an N-d convolution (input NC<spatial>, weights M x C/group x <kernel>).
struct ConvShape {
    std::int64_t N = 0, C = 0, M = 0, group = 1;
    std::vector<std::int64_t> in;  // spatial
    WindowGeometry g;
    std::int64_t in_size() const { return product(in); }
    std::int64_t out_size() const { return product(g.out); }
    std::int64_t kernel_size() const { return product(g.kernel); }
};

inline ConvShape conv_shape(const Node& n, const Shape& x, const Shape& w) {
    BPUQ_CHECK(x.size() >= 3 && w.size() == x.size(), "graph.shape",
               n.describe() + " needs input and weights of the same rank >= 3, got " + shape_to_string(x) + " and " +
                   shape_to_string(w));
    ConvShape s;
    s.N = x[0];
    s.C = x[1];
    s.M = w[0];
    s.group = n.attr_int("group", 1);
    BPUQ_CHECK(s.group > 0 && s.C % s.group == 0 && s.M % s.group == 0 && w[1] * s.group == s.C, "graph.shape",
               n.describe() + " input channels " + std::to_string(s.C) + ", weights " + shape_to_string(w) +
                   " and group " + std::to_string(s.group) + " do not fit together");
    s.in.assign(x.begin() + 2, x.end());
    std::vector<std::int64_t> k = n.attr_ints("kernel_shape", std::vector<std::int64_t>(w.begin() + 2, w.end()));
    s.g = window_geometry(n, s.in, k);
    return s;
}

inline void infer_conv(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    const DType t = n.op_type == "ConvInteger" ? DType::int32
                    : n.op_type == "QLinearConv" && in.size() > 7 && in[7].present() ? in[7].value->dtype
                                                                                     : DType::float32;
    const std::size_t wi = n.op_type == "QLinearConv" ? 3 : 1;
    set_output_dtype(out, 0, t);
    if (in.size() <= wi || !in[0].known_shape() || !in[wi].known_shape()) return;
    const Shape& x = in[0].shape();
    for (std::size_t i = 2; i < x.size(); ++i)
        if (x[i] < 0) return;
    const ConvShape s = conv_shape(n, x, in[wi].shape());
    Shape o = {s.N, s.M};
    o.insert(o.end(), s.g.out.begin(), s.g.out.end());
    set_output(out, 0, t, o);
}

/// dst[ow] = xrow[2 * ow + off] for ow in [lo, hi) (all inside the row of width W). The AVX-512
/// float form takes 16 outputs from two (masked, so never past the row) loads and a permute.
template <class T>
inline void im2col_stride2_row(const T* xrow, std::int64_t W, std::int64_t off, std::int64_t lo, std::int64_t hi,
                               T* dst) {
    std::int64_t ow = lo;
#if defined(__AVX512F__)
    if constexpr (std::is_same<T, float>::value) {
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        for (; ow + 16 <= hi; ow += 16) {
            const std::int64_t first = 2 * ow + off, avail = W - first;  // avail >= 31 except near the end
            const __mmask16 m0 = avail >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << avail) - 1);
            const __mmask16 m1 = avail >= 32   ? __mmask16(0xFFFF)
                                 : avail <= 16 ? __mmask16(0)
                                               : __mmask16((1u << (avail - 16)) - 1);
            const __m512 v0 = _mm512_maskz_loadu_ps(m0, xrow + first), v1 = _mm512_maskz_loadu_ps(m1, xrow + first + 16);
            _mm512_storeu_ps(dst + ow, _mm512_permutex2var_ps(v0, even, v1));
        }
    }
#else
    (void)W;
#endif
    for (; ow < hi; ++ow) dst[ow] = xrow[2 * ow + off];
}

/// im2col for one image and one group: col[(c, k...)][out position] (zero where padded).
/// 2-D inputs may be limited to output rows [oh_begin, oh_end) (rows of col are then
/// (oh_end - oh_begin) * OW long); oh_end < 0 means all rows.
template <class T>
void im2col(const T* x, std::int64_t channels, const ConvShape& s, T* col, const ExecContext& ctx,
            std::int64_t oh_begin = 0, std::int64_t oh_end = -1) {
    const std::size_t d = s.in.size();
    const std::int64_t K = s.kernel_size(), in_size = s.in_size();
    if (d == 2) {
        const std::int64_t H = s.in[0], W = s.in[1], KW = s.g.kernel[1];
        const std::int64_t OW = s.g.out[1], SH = s.g.strides[0], SW = s.g.strides[1];
        const std::int64_t oh0 = oh_begin, oh1 = oh_end < 0 ? s.g.out[0] : oh_end, P = (oh1 - oh0) * OW;
        const std::int64_t DH = s.g.dilations[0], DW = s.g.dilations[1], PH = s.g.pads[0], PW = s.g.pads[1];
        ctx.parallel_for(channels * K, 16, [&](std::int64_t rb, std::int64_t re) {
            for (std::int64_t row = rb; row < re; ++row) {
                const std::int64_t c = row / K, kh = (row % K) / KW, kw = row % KW;
                const T* xc = x + c * in_size;
                T* dst = col + row * P;
                // valid ow (0 <= ow*SW + off < W) depend on kw only, not on the output row
                const std::int64_t off = kw * DW - PW;
                std::int64_t lo = off >= 0 ? 0 : (-off + SW - 1) / SW;
                std::int64_t hi = W - off <= 0 ? 0 : (W - off + SW - 1) / SW;
                lo = std::min(lo, OW);
                hi = std::max(lo, std::min(hi, OW));
                for (std::int64_t oh = oh0; oh < oh1; ++oh) {
                    const std::int64_t ih = oh * SH - PH + kh * DH;
                    T* drow = dst + (oh - oh0) * OW;
                    if (ih < 0 || ih >= H) {
                        std::fill(drow, drow + OW, T(0));
                        continue;
                    }
                    const T* xrow = xc + ih * W;
                    for (std::int64_t ow = 0; ow < lo; ++ow) drow[ow] = T(0);
                    if (SW == 1) std::copy(xrow + lo + off, xrow + hi + off, drow + lo);
                    else if (SW == 2) im2col_stride2_row(xrow, W, off, lo, hi, drow);
                    else
                        for (std::int64_t ow = lo; ow < hi; ++ow) drow[ow] = xrow[ow * SW + off];
                    for (std::int64_t ow = hi; ow < OW; ++ow) drow[ow] = T(0);
                }
            }
        });
        return;
    }
    // generic N-d
    const std::int64_t P = s.out_size();
    std::vector<std::int64_t> kidx(d), oidx(d);
    for (std::int64_t c = 0; c < channels; ++c)
        for (std::int64_t k = 0; k < K; ++k) {
            std::int64_t r = k;
            for (std::size_t i = d; i-- > 0;) {
                kidx[i] = r % s.g.kernel[i];
                r /= s.g.kernel[i];
            }
            T* dst = col + (c * K + k) * P;
            for (std::int64_t p = 0; p < P; ++p) {
                std::int64_t q = p, off = 0;
                bool inside = true;
                for (std::size_t i = d; i-- > 0;) {
                    oidx[i] = q % s.g.out[i];
                    q /= s.g.out[i];
                }
                for (std::size_t i = 0; i < d; ++i) {
                    const std::int64_t pos = oidx[i] * s.g.strides[i] - s.g.pads[i] + kidx[i] * s.g.dilations[i];
                    if (pos < 0 || pos >= s.in[i]) {
                        inside = false;
                        break;
                    }
                    off = off * s.in[i] + pos;
                }
                dst[p] = inside ? x[c * in_size + off] : T(0);
            }
        }
}

template <class T>
using RowMatrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using StridedMap = Eigen::Map<RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using ConstStridedMap = Eigen::Map<const RowMatrix<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

/// C[m x n] (+)= A[m x k] * B[k x n], row-major with leading dims; columns of C are split
/// over the context's threads.
template <class T>
void gemm(const T* A, std::int64_t lda, const T* B, std::int64_t ldb, T* C, std::int64_t ldc, std::int64_t m,
          std::int64_t n, std::int64_t k, bool accumulate, const ExecContext& ctx) {
    if (m == 0 || n == 0) return;
    if (k == 0) {
        if (!accumulate)
            for (std::int64_t i = 0; i < m; ++i) std::fill(C + i * ldc, C + i * ldc + n, T(0));
        return;
    }
    ConstStridedMap<T> a(A, m, k, Eigen::OuterStride<>(lda));
    const std::int64_t grain = std::max<std::int64_t>(64, (m * k > 0 ? (1 << 17) / (m * k) : 64));
    ctx.parallel_for(n, grain, [&](std::int64_t b, std::int64_t e) {
        // keep column blocks a multiple of 8 floats where possible (full SIMD stores)
        ConstStridedMap<T> bm(B + b, k, e - b, Eigen::OuterStride<>(ldb));
        StridedMap<T> cm(C + b, m, e - b, Eigen::OuterStride<>(ldc));
        if (accumulate) cm.noalias() += a * bm;
        else cm.noalias() = a * bm;
    });
}

/// Depthwise 2-D convolution (group == C == M), direct, channels over threads.
///
/// Equal strides S (any dilation): each input plane is scattered into S*S zero-padded
/// phase planes (phase (a, b) holds padded pixels (S*i + a, S*j + b)) of width Wq. Every tap
/// (kh, kw) then reads one phase plane at a fixed offset, so the output plane, computed
/// as one long row of width Wq, is KH*KW contiguous multiply-adds over OH*Wq values (the
/// columns >= OW are junk and dropped). Other stride combinations use per-row loops.
inline void depthwise_conv2d(const float* x, const float* w, const float* bias, float* y, const ConvShape& s,
                             const Epilogue& ep, const ExecContext& ctx) {
    const std::int64_t H = s.in[0], W = s.in[1], KH = s.g.kernel[0], KW = s.g.kernel[1];
    const std::int64_t OH = s.g.out[0], OW = s.g.out[1], SH = s.g.strides[0], SW = s.g.strides[1];
    const std::int64_t DH = s.g.dilations[0], DW = s.g.dilations[1], PH = s.g.pads[0], PW = s.g.pads[1];
    // padded extent actually read by the windows
    const std::int64_t Hp = std::max(H + PH, (OH - 1) * SH + (KH - 1) * DH + 1);
    const std::int64_t Wp = std::max(W + PW, (OW - 1) * SW + (KW - 1) * DW + 1);
    const bool phased = SH == SW && SH <= 4;
    const std::int64_t S = phased ? SH : 1;
    const std::int64_t Wq = (Wp + S - 1) / S;
    const std::int64_t Hq = std::max((Hp + S - 1) / S, OH + (KH - 1) * DH / S) + 1;  // +1: junk-column overrun
    ctx.parallel_for(s.N * s.C, 1, [&](std::int64_t b, std::int64_t e) {
        std::vector<float> planes(static_cast<std::size_t>(S * S * Hq * Wq)), acc;
        if (phased) acc.resize(static_cast<std::size_t>(OH * Wq));
        for (std::int64_t nc = b; nc < e; ++nc) {
            const std::int64_t c = nc % s.C;
            const float* xc = x + nc * H * W;
            const float* wc = w + c * KH * KW;
            float* yc = y + nc * OH * OW;
            const float b0 = bias ? bias[c] : 0.f;
            std::fill(planes.begin(), planes.end(), 0.f);
            for (std::int64_t h = 0; h < H; ++h) {
                const std::int64_t r = h + PH;
                float* prow = planes.data() + ((r % S) * S * Hq + r / S) * Wq;
                const float* xr = xc + h * W;
                if (S == 1) {
                    std::copy(xr, xr + W, prow + PW);
                } else if (S == 2) {  // even padded columns to phase 0, odd to phase 1
                    // padded column 2k holds x[2k - PW], column 2k+1 holds x[2k+1 - PW]
                    float* __restrict p0 = prow;
                    float* __restrict p1 = prow + Hq * Wq;
                    const std::int64_t e0 = (PW + 1) / 2, e1 = (W - 1 + PW) / 2 + 1;
                    const std::int64_t o0 = PW / 2, o1 = W - 2 + PW >= 0 ? (W - 2 + PW) / 2 + 1 : o0;
                    for (std::int64_t k = e0; k < e1; ++k) p0[k] = xr[2 * k - PW];
                    for (std::int64_t k = o0; k < o1; ++k) p1[k] = xr[2 * k + 1 - PW];
                } else {
                    for (std::int64_t col = PW; col < PW + W; ++col)
                        prow[(col % S) * Hq * Wq + col / S] = xr[col - PW];
                }
            }
            if (phased) {
                float* __restrict a = acc.data();
                const std::int64_t len = OH * Wq;
                for (std::int64_t i = 0; i < len; ++i) a[i] = b0;
                for (std::int64_t kh = 0; kh < KH; ++kh)
                    for (std::int64_t kw = 0; kw < KW; ++kw) {
                        const std::int64_t rr = kh * DH, cc = kw * DW;
                        const float wv = wc[kh * KW + kw];
                        const float* __restrict src =
                            planes.data() + ((rr % S) * S + cc % S) * Hq * Wq + (rr / S) * Wq + cc / S;
                        for (std::int64_t i = 0; i < len; ++i) a[i] += wv * src[i];
                    }
                for (std::int64_t oh = 0; oh < OH; ++oh)
                    for (std::int64_t ow = 0; ow < OW; ++ow)
                        yc[oh * OW + ow] = std::min(ep.hi, std::max(ep.lo, a[oh * Wq + ow]));
                continue;
            }
            // unequal strides: per-row loops over the single padded plane (S == 1 here)
            for (std::int64_t oh = 0; oh < OH; ++oh) {
                float* yrow = yc + oh * OW;
                for (std::int64_t ow = 0; ow < OW; ++ow) yrow[ow] = b0;
                for (std::int64_t kh = 0; kh < KH; ++kh) {
                    const float* row = planes.data() + (oh * SH + kh * DH) * Wq;
                    for (std::int64_t kw = 0; kw < KW; ++kw) {
                        const float wv = wc[kh * KW + kw];
                        const float* xs = row + kw * DW;
                        for (std::int64_t ow = 0; ow < OW; ++ow) yrow[ow] += wv * xs[ow * SW];
                    }
                }
                for (std::int64_t ow = 0; ow < OW; ++ow) yrow[ow] = std::min(ep.hi, std::max(ep.lo, yrow[ow]));
            }
        }
    });
}

#if BPUQ_HAS_VECTOR_EXTENSIONS
/// Stride-1 2-D convolution without an im2col matrix: the input is copied once into a
/// zero-padded image of width Wp; row (c, kh, kw) of the would-be im2col matrix is then the
/// padded channel c shifted by kh*DH*Wp + kw*DW, read as one long row of OH*Wp values. The
/// GEMM produces OH rows of width Wp per output channel, of which the first OW are kept.
inline void conv2d_stride1_shifted(const float* x, const float* w, const float* bias, float* y, const ConvShape& s,
                                   const Epilogue& ep, const ExecContext& ctx) {
    const std::int64_t H = s.in[0], W = s.in[1], KH = s.g.kernel[0], KW = s.g.kernel[1];
    const std::int64_t OH = s.g.out[0], OW = s.g.out[1], DH = s.g.dilations[0], DW = s.g.dilations[1];
    const std::int64_t PH = s.g.pads[0], PW = s.g.pads[1];
    const std::int64_t Wp = std::max(W + PW, OW + (KW - 1) * DW);
    const std::int64_t Hp = std::max(H + PH, OH + (KH - 1) * DH) + 1;  // +1: junk-column overrun
    const std::int64_t Cg = s.C / s.group, Mg = s.M / s.group, K = Cg * KH * KW, N = OH * Wp;
    // per-thread buffers reused across calls: `out` is overwritten by the GEMM, `padded` is
    // cleared below (its borders must be zero). The lambdas below run on worker threads too,
    // so they must see the calling thread's buffers through these references, never the
    // thread_local names themselves.
    thread_local std::vector<float> padded_buffer, out_buffer;
    std::vector<float>& padded = padded_buffer;
    std::vector<float>& out = out_buffer;
    if (padded.size() < static_cast<std::size_t>(Cg * Hp * Wp)) padded.resize(static_cast<std::size_t>(Cg * Hp * Wp));
    if (out.size() < static_cast<std::size_t>(Mg * N)) out.resize(static_cast<std::size_t>(Mg * N));
    std::vector<const float*> rows(static_cast<std::size_t>(K));
    for (std::int64_t nb = 0; nb < s.N; ++nb)
        for (std::int64_t g = 0; g < s.group; ++g) {
            const float* xg = x + (nb * s.C + g * Cg) * H * W;
            std::fill(padded.begin(), padded.begin() + Cg * Hp * Wp, 0.f);
            for (std::int64_t c = 0; c < Cg; ++c)
                for (std::int64_t h = 0; h < H; ++h)
                    std::copy(xg + (c * H + h) * W, xg + (c * H + h + 1) * W, padded.data() + (c * Hp + h + PH) * Wp + PW);
            for (std::int64_t c = 0, k = 0; c < Cg; ++c)
                for (std::int64_t kh = 0; kh < KH; ++kh)
                    for (std::int64_t kw = 0; kw < KW; ++kw, ++k)
                        rows[std::size_t(k)] = padded.data() + c * Hp * Wp + kh * DH * Wp + kw * DW;
            const float* wg = w + g * Mg * K;
            wide_gemm::RowsOfB b;
            b.rows = rows.data();
            float* yg = y + (nb * s.M + g * Mg) * OH * OW;
#if defined(__AVX512F__)
            {
                // bias and clamp are applied by the GEMM; only the valid columns are copied
                packed_gemm::gemm_auto(wg, K, b, out.data(), N, Mg, N, K, bias ? bias + g * Mg : nullptr, ep.lo, ep.hi, w,
                                       ctx);
                ctx.parallel_for(Mg, 4, [&](std::int64_t m0, std::int64_t m1) {
                    for (std::int64_t m = m0; m < m1; ++m)
                        for (std::int64_t oh = 0; oh < OH; ++oh) {
                            const float* src = out.data() + m * N + oh * Wp;
                            std::copy(src, src + OW, yg + (m * OH + oh) * OW);
                        }
                });
                continue;
            }
#endif
            const std::int64_t block = 512, blocks = (N + block - 1) / block;
            ctx.parallel_for(blocks, 1, [&](std::int64_t b0, std::int64_t b1) {
                for (std::int64_t blk = b0; blk < b1; ++blk) {
                    const std::int64_t n0 = blk * block;
                    wide_gemm::gemm_rows(wg, K, b.shifted(n0), out.data() + n0, N, Mg, std::min(block, N - n0), K);
                }
            });
            ctx.parallel_for(Mg, 4, [&](std::int64_t m0, std::int64_t m1) {
                for (std::int64_t m = m0; m < m1; ++m) {
                    const float bv = bias ? bias[g * Mg + m] : 0.f;
                    for (std::int64_t oh = 0; oh < OH; ++oh) {
                        const float* src = out.data() + m * N + oh * Wp;
                        float* dst = yg + (m * OH + oh) * OW;
                        for (std::int64_t ow = 0; ow < OW; ++ow) dst[ow] = std::min(ep.hi, std::max(ep.lo, src[ow] + bv));
                    }
                }
            });
        }
}
#endif

/// y = conv(x, w) + bias, then the epilogue clamp; NCHW float.
inline void conv_float(const float* x, const float* w, const float* bias, float* y, const ConvShape& s,
                       const Epilogue& ep, const ExecContext& ctx) {
    const std::int64_t Cg = s.C / s.group, Mg = s.M / s.group;
    const std::int64_t K = Cg * s.kernel_size(), P = s.out_size(), in_size = s.in_size();
    if (s.in.size() == 2 && s.group == s.C && s.group == s.M) {
        depthwise_avx512::DepthwiseGeometry dg;
        dg.planes = s.N * s.C;
        dg.channels = s.C;
        dg.H = s.in[0], dg.W = s.in[1], dg.KH = s.g.kernel[0], dg.KW = s.g.kernel[1];
        dg.OH = s.g.out[0], dg.OW = s.g.out[1], dg.SH = s.g.strides[0], dg.SW = s.g.strides[1];
        dg.DH = s.g.dilations[0], dg.DW = s.g.dilations[1], dg.PH = s.g.pads[0], dg.PW = s.g.pads[1];
        if (depthwise_avx512::suits(dg)) depthwise_avx512::conv2d(x, w, bias, y, dg, ep.lo, ep.hi, ctx);
        else depthwise_conv2d(x, w, bias, y, s, ep, ctx);
        return;
    }
#if BPUQ_HAS_VECTOR_EXTENSIONS
    if (s.in.size() == 2 && s.g.strides[0] == 1 && s.g.strides[1] == 1 && s.kernel_size() > 1 &&
        (packed_gemm::available() || wide_gemm::suits(s.g.out[0] * s.g.out[1], K))) {
        conv2d_stride1_shifted(x, w, bias, y, s, ep, ctx);
        return;
    }
#endif
    bool pointwise = s.kernel_size() == 1;
    for (std::size_t i = 0; i < s.in.size(); ++i)
        pointwise = pointwise && s.g.strides[i] == 1 && s.g.pads[i] == 0 && s.g.pads[i + s.in.size()] == 0;
    std::vector<float> col;  // the im2col matrix (or a block of it), when not pointwise
#if defined(__AVX512F__)
    // below 8 columns (e.g. a 1x1 map: a fully connected layer) Eigen's GEMV, which streams the
    // weights once, beats packing them
    if (P >= packed_gemm::kLanes / 2) {
        // weights packed per group (or their cached packing), bias and clamp fused into the GEMM's stores
        // 2-D im2col in blocks of output rows (about kIm2colBlockBytes of col), each multiplied
        // while it is still in cache, instead of one matrix that goes out to memory and back
        constexpr std::int64_t kIm2colBlockBytes = 256 * 1024;
        const bool blocked = !pointwise && s.in.size() == 2;
        const std::int64_t OH = blocked ? s.g.out[0] : 1, OW = blocked ? s.g.out[1] : P;
        const std::int64_t rows_per_block =
            blocked ? std::max<std::int64_t>(1, std::min(OH, kIm2colBlockBytes / std::max<std::int64_t>(1, 4 * K * OW))) : 1;
        if (!pointwise) col.resize(static_cast<std::size_t>(K * (blocked ? rows_per_block * OW : P)));
        for (std::int64_t nb = 0; nb < s.N; ++nb)
            for (std::int64_t g = 0; g < s.group; ++g) {
                const float* xg = x + (nb * s.C + g * Cg) * in_size;
                float* yg = y + (nb * s.M + g * Mg) * P;
                const float* bg = bias ? bias + g * Mg : nullptr;
                wide_gemm::RowsOfB b;
                b.base = xg;
                b.ld = P;
                if (blocked) {
                    for (std::int64_t oh = 0; oh < OH; oh += rows_per_block) {
                        const std::int64_t oh_end = std::min(OH, oh + rows_per_block), n = (oh_end - oh) * OW;
                        im2col(xg, Cg, s, col.data(), ctx, oh, oh_end);
                        b.base = col.data();
                        b.ld = n;
                        packed_gemm::gemm_auto(w + g * Mg * K, K, b, yg + oh * OW, P, Mg, n, K, bg, ep.lo, ep.hi, w, ctx);
                    }
                    continue;
                }
                if (!pointwise) {
                    im2col(xg, Cg, s, col.data(), ctx);
                    b.base = col.data();
                }
                packed_gemm::gemm_auto(w + g * Mg * K, K, b, yg, P, Mg, P, K, bg, ep.lo, ep.hi, w, ctx);
            }
        return;
    }
#endif
    if (!pointwise) col.resize(static_cast<std::size_t>(K * P));
    for (std::int64_t nb = 0; nb < s.N; ++nb)
        for (std::int64_t g = 0; g < s.group; ++g) {
            const float* xg = x + (nb * s.C + g * Cg) * in_size;
            const float* B = xg;
            if (!pointwise) {
                im2col(xg, Cg, s, col.data(), ctx);
                B = col.data();
            }
            float* yg = y + (nb * s.M + g * Mg) * P;
            const float* wg = w + g * Mg * K;
            const float* bg = bias ? bias + g * Mg : nullptr;
            // column blocks: the bias/activation epilogue runs on each block while it is still
            // in cache, and blocks are the unit of threading
            const std::int64_t block = P <= 1024 ? P : 512;
            const std::int64_t blocks = (P + block - 1) / block;
            ConstStridedMap<float> a(wg, Mg, K, Eigen::OuterStride<>(K));
            ctx.parallel_for(blocks, 1, [&](std::int64_t b0, std::int64_t b1) {
                for (std::int64_t blk = b0; blk < b1; ++blk) {
                    const std::int64_t p0 = blk * block, n = std::min(block, P - p0);
                    StridedMap<float> cm(yg + p0, Mg, n, Eigen::OuterStride<>(P));
                    if (K == 0) cm.setZero();
#if BPUQ_HAS_VECTOR_EXTENSIONS
                    else if (wide_gemm::suits(n, K)) wide_gemm::gemm(wg, K, B + p0, P, yg + p0, P, Mg, n, K);
#endif
                    else cm.noalias() = a * ConstStridedMap<float>(B + p0, K, n, Eigen::OuterStride<>(P));
                    if (!bg && !ep.active()) continue;
                    for (std::int64_t m = 0; m < Mg; ++m) {
                        float* row = yg + m * P + p0;
                        const float bv = bg ? bg[m] : 0.f;
                        for (std::int64_t i = 0; i < n; ++i) row[i] = std::min(ep.hi, std::max(ep.lo, row[i] + bv));
                    }
                }
            });
        }
}

inline void run_conv(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                     const ExecContext& ctx, std::int64_t) {
    const Tensor& x = need(n, in, 0);
    const Tensor& w = need(n, in, 1);
    check_float(n, x, "input");
    check_float(n, w, "weight");
    const ConvShape s = conv_shape(n, x.shape(), w.shape());
    const Tensor* b = opt(in, 2);
    if (b) {
        check_float(n, *b, "bias");
        BPUQ_CHECK(b->numel() == s.M, "graph.shape",
                   n.describe() + " bias has " + std::to_string(b->numel()) + " values for " + std::to_string(s.M) +
                       " output channels");
    }
    Shape os = {s.N, s.M};
    os.insert(os.end(), s.g.out.begin(), s.g.out.end());
    out[0] = new_output(DType::float32, os);
    conv_float(x.data<float>(), w.data<float>(), b ? b->data<float>() : nullptr, out[0].data<float>(), s,
               conv_epilogue(n), ctx);
}

/// Integer convolution core: (x - xzp) * (w - wzp[m]) accumulated exactly in int32.
inline Tensor conv_integer_accumulate(const Node& n, const Tensor& x, const Tensor& w, const Tensor* xzp,
                                      const Tensor* wzp, const ExecContext& ctx) {
    auto widen = [&](const Tensor& t, const Tensor* zp, std::int64_t axis_len, const char* what) {
        Tensor r(DType::int32, t.shape());
        std::int32_t* d = r.data<std::int32_t>();
        const std::int64_t per = axis_len > 0 ? t.numel() / axis_len : 1;
        dispatch_numeric(n, t.dtype(), [&](auto tag) {
            using T = decltype(tag);
            if constexpr (std::is_same<T, std::int8_t>::value || std::is_same<T, std::uint8_t>::value) {
                const T* s = t.data<T>();
                const T* z = zp ? zp->data<T>() : nullptr;
                BPUQ_CHECK(!zp || zp->dtype() == t.dtype(), "graph.dtype", n.describe() + " zero point type differs");
                const std::int64_t nz = zp ? zp->numel() : 0;
                for (std::int64_t i = 0; i < t.numel(); ++i)
                    d[i] = std::int32_t(s[i]) - (nz == 0 ? 0 : std::int32_t(z[nz == 1 ? 0 : (i / per) % nz]));
            } else {
                BPUQ_THROW("graph.dtype", n.describe() + " " + what + " must be int8 or uint8");
            }
        });
        return r;
    };
    const Tensor xi = widen(x, xzp, 0, "input");
    const Tensor wi = widen(w, wzp, w.dim(0), "weight");
    const ConvShape s = conv_shape(n, x.shape(), w.shape());
    Shape os = {s.N, s.M};
    os.insert(os.end(), s.g.out.begin(), s.g.out.end());
    Tensor y(DType::int32, os);
    const std::int64_t Cg = s.C / s.group, Mg = s.M / s.group, K = Cg * s.kernel_size(), P = s.out_size();
    std::vector<std::int32_t> col(static_cast<std::size_t>(K * P));
    for (std::int64_t nb = 0; nb < s.N; ++nb)
        for (std::int64_t g = 0; g < s.group; ++g) {
            im2col(xi.data<std::int32_t>() + (nb * s.C + g * Cg) * s.in_size(), Cg, s, col.data(), ctx);
            gemm(wi.data<std::int32_t>() + g * Mg * K, K, col.data(), P, y.data<std::int32_t>() + (nb * s.M + g * Mg) * P,
                 P, Mg, P, K, false, ctx);
        }
    return y;
}

inline void run_conv_integer(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                             const ExecContext& ctx, std::int64_t) {
    out[0] = conv_integer_accumulate(n, need(n, in, 0), need(n, in, 1), opt(in, 2), opt(in, 3), ctx);
}

/// Requantizes an int32 accumulator: round-half-to-even(acc * scale) + zp, saturated to T.
template <class T>
inline T requantize_float(double v, std::int32_t zp) {
    const double r = std::nearbyint(v) + zp;
    return static_cast<T>(std::min<double>(std::numeric_limits<T>::max(), std::max<double>(std::numeric_limits<T>::lowest(), r)));
}

inline void run_qlinear_conv(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                             const ExecContext& ctx, std::int64_t) {
    const Tensor& x = need(n, in, 0);
    const Tensor& xs = need(n, in, 1);
    const Tensor& w = need(n, in, 3);
    const Tensor& ws = need(n, in, 4);
    const Tensor& ys = need(n, in, 6);
    const Tensor& yzp = need(n, in, 7);
    Tensor acc = conv_integer_accumulate(n, x, w, opt(in, 2), opt(in, 5), ctx);
    const std::int64_t M = w.dim(0), P = acc.numel() / (acc.dim(0) * M);
    const Tensor* bias = opt(in, 8);
    const float xsv = to_floats(n, xs, "x_scale")[0], ysv = to_floats(n, ys, "y_scale")[0];
    const std::vector<float> wsv = to_floats(n, ws, "w_scale");
    out[0] = Tensor(yzp.dtype(), acc.shape());
    dispatch_numeric(n, yzp.dtype(), [&](auto tag) {
        using T = decltype(tag);
        const std::int32_t zp = std::int32_t(yzp.data<T>()[0]);
        T* d = out[0].data<T>();
        const std::int32_t* a = acc.data<std::int32_t>();
        for (std::int64_t i = 0; i < acc.numel(); ++i) {
            const std::int64_t m = (i / P) % M;
            const std::int64_t v = std::int64_t(a[i]) + (bias ? bias->data<std::int32_t>()[m] : 0);
            const double scale = double(xsv) * double(wsv[wsv.size() == 1 ? 0 : m]) / double(ysv);
            d[i] = requantize_float<T>(double(v) * scale, zp);
        }
    });
}

// ---- ConvTranspose ----
struct ConvTransposeShape {
    ConvShape s;  // s.in = input spatial, s.g.out = output spatial, s.M = output channels
};

inline ConvShape conv_transpose_shape(const Node& n, const Shape& x, const Shape& w) {
    BPUQ_CHECK(x.size() >= 3 && w.size() == x.size(), "graph.shape",
               n.describe() + " needs input and weights of the same rank >= 3");
    ConvShape s;
    s.N = x[0];
    s.C = x[1];
    s.group = n.attr_int("group", 1);
    BPUQ_CHECK(s.group > 0 && w[0] == s.C && s.C % s.group == 0, "graph.shape",
               n.describe() + " weights " + shape_to_string(w) + " do not fit input channels " + std::to_string(s.C));
    s.M = w[1] * s.group;
    const std::size_t d = x.size() - 2;
    s.in.assign(x.begin() + 2, x.end());
    WindowGeometry& g = s.g;
    g.kernel = n.attr_ints("kernel_shape", std::vector<std::int64_t>(w.begin() + 2, w.end()));
    g.strides = n.attr_ints("strides", std::vector<std::int64_t>(d, 1));
    g.dilations = n.attr_ints("dilations", std::vector<std::int64_t>(d, 1));
    g.pads = n.attr_ints("pads", std::vector<std::int64_t>(2 * d, 0));
    const auto out_pad = n.attr_ints("output_padding", std::vector<std::int64_t>(d, 0));
    const auto out_shape = n.attr_ints("output_shape");
    const std::string auto_pad = n.attr_string("auto_pad", "NOTSET");
    BPUQ_CHECK(g.kernel.size() == d && g.strides.size() == d && g.dilations.size() == d && g.pads.size() == 2 * d &&
                   out_pad.size() == d,
               "graph.attribute", n.describe() + " attributes do not match " + std::to_string(d) + " spatial dims");
    g.out.resize(d);
    for (std::size_t i = 0; i < d; ++i) {
        const std::int64_t full = g.strides[i] * (s.in[i] - 1) + out_pad[i] + (g.kernel[i] - 1) * g.dilations[i] + 1;
        if (!out_shape.empty() || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
            const std::int64_t target = !out_shape.empty() ? out_shape[out_shape.size() - d + i] : s.in[i] * g.strides[i];
            // total may be negative when output_shape asks for more than the full output: the
            // extra rows are then zeros (+bias) at the end, as in ONNX's reference
            const std::int64_t total = full - target;
            const std::int64_t half = total >= 0 ? total / 2 : -((-total + 1) / 2);  // floor(total / 2)
            // SAME_UPPER puts the odd pad at the end; SAME_LOWER and output_shape at the start
            g.pads[i] = auto_pad == "SAME_UPPER" ? half : total - half;
            g.pads[i + d] = total - g.pads[i];
        } else if (auto_pad == "VALID") {
            g.pads[i] = g.pads[i + d] = 0;
        }
        g.out[i] = full - g.pads[i] - g.pads[i + d];
        BPUQ_CHECK(g.out[i] >= 0, "graph.shape", n.describe() + " output would have a negative size");
    }
    return s;
}

inline void infer_conv_transpose(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out,
                                 std::int64_t) {
    set_output_dtype(out, 0, DType::float32);
    if (in.size() < 2 || !in[0].known_shape() || !in[1].known_shape()) return;
    const ConvShape s = conv_transpose_shape(n, in[0].shape(), in[1].shape());
    Shape o = {s.N, s.M};
    o.insert(o.end(), s.g.out.begin(), s.g.out.end());
    set_output(out, 0, DType::float32, o);
}

inline void run_conv_transpose(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                               const ExecContext& ctx, std::int64_t) {
    const Tensor& x = need(n, in, 0);
    const Tensor& w = need(n, in, 1);
    check_float(n, x, "input");
    check_float(n, w, "weight");
    const ConvShape s = conv_transpose_shape(n, x.shape(), w.shape());
    const Tensor* b = opt(in, 2);
    Shape os = {s.N, s.M};
    os.insert(os.end(), s.g.out.begin(), s.g.out.end());
    out[0] = Tensor(DType::float32, os);
    float* y = out[0].data<float>();
    const std::size_t d = s.in.size();
    const std::int64_t Cg = s.C / s.group, Mg = s.M / s.group, KS = s.kernel_size();
    const std::int64_t Pin = s.in_size(), Pout = s.out_size(), R = Mg * KS;
    std::vector<float> col(static_cast<std::size_t>(R * Pin));
    std::vector<std::int64_t> kidx(d), iidx(d);
    for (std::int64_t nb = 0; nb < s.N; ++nb)
        for (std::int64_t g = 0; g < s.group; ++g) {
            // col[(m, k), p] = sum_c W[c, m, k] * X[c, p]
            const float* wg = w.data<float>() + g * Cg * R;
            const float* xg = x.data<float>() + (nb * s.C + g * Cg) * Pin;
            Eigen::Map<const RowMatrix<float>> wm(wg, Cg, R);
            Eigen::Map<const RowMatrix<float>> xm(xg, Cg, Pin);
            Eigen::Map<RowMatrix<float>> cm(col.data(), R, Pin);
            cm.noalias() = wm.transpose() * xm;
            float* yg = y + (nb * s.M + g * Mg) * Pout;
            // col2im: scatter-add every column entry to its output position
            for (std::int64_t m = 0; m < Mg; ++m)
                for (std::int64_t k = 0; k < KS; ++k) {
                    std::int64_t r = k;
                    for (std::size_t i = d; i-- > 0;) {
                        kidx[i] = r % s.g.kernel[i];
                        r /= s.g.kernel[i];
                    }
                    const float* src = col.data() + (m * KS + k) * Pin;
                    for (std::int64_t p = 0; p < Pin; ++p) {
                        std::int64_t q = p, off = 0;
                        for (std::size_t i = d; i-- > 0;) {
                            iidx[i] = q % s.in[i];
                            q /= s.in[i];
                        }
                        bool inside = true;
                        for (std::size_t i = 0; i < d && inside; ++i) {
                            const std::int64_t pos = iidx[i] * s.g.strides[i] + kidx[i] * s.g.dilations[i] - s.g.pads[i];
                            inside = pos >= 0 && pos < s.g.out[i];
                            off = off * s.g.out[i] + pos;
                        }
                        if (inside) yg[m * Pout + off] += src[p];
                    }
                }
        }
    if (b) {
        check_float(n, *b, "bias");
        for (std::int64_t nm = 0; nm < s.N * s.M; ++nm)
            for (std::int64_t p = 0; p < Pout; ++p) y[nm * Pout + p] += b->data<float>()[nm % s.M];
    }
}

}  // namespace ops
}  // namespace graph

BPUQ_NAMESPACE_END
