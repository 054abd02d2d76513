// Pooling: MaxPool (with optional Indices), AveragePool (pads, ceil_mode, count_include_pad,
// dilations), GlobalAveragePool, GlobalMaxPool. 1-3 spatial dims.
#pragma once

#include <limits>

#include "common.hpp"
#include "depthwise_kernel.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {
namespace ops {

/// Pool geometry lifted to exactly 3 spatial dims (leading dims of size 1) so one loop nest
/// serves 1-D, 2-D and 3-D pooling.
struct Pool3 {
    std::int64_t planes = 0;
    std::int64_t in[3], out[3], k[3], s[3], d[3], pb[3], pe[3];
};

inline Pool3 pool_geometry(const Node& n, const Shape& x, Shape& out_shape) {
    BPUQ_CHECK(x.size() >= 3 && x.size() <= 5, "graph.shape",
               n.describe() + " supports inputs with 1 to 3 spatial dims, got " + shape_to_string(x));
    const std::vector<std::int64_t> in(x.begin() + 2, x.end());
    BPUQ_CHECK(n.has_attr("kernel_shape"), "graph.attribute", n.describe() + " needs kernel_shape");
    const WindowGeometry g = window_geometry(n, in, n.attr_ints("kernel_shape"), n.attr_int("ceil_mode", 0) != 0);
    const std::size_t dd = in.size(), lift = 3 - dd;
    Pool3 p;
    p.planes = x[0] * x[1];
    for (std::size_t i = 0; i < 3; ++i) {
        const bool real = i >= lift;
        const std::size_t j = real ? i - lift : 0;
        p.in[i] = real ? in[j] : 1;
        p.out[i] = real ? g.out[j] : 1;
        p.k[i] = real ? g.kernel[j] : 1;
        p.s[i] = real ? g.strides[j] : 1;
        p.d[i] = real ? g.dilations[j] : 1;
        p.pb[i] = real ? g.pads[j] : 0;
        p.pe[i] = real ? g.pads[j + dd] : 0;
    }
    out_shape = {x[0], x[1]};
    out_shape.insert(out_shape.end(), g.out.begin(), g.out.end());
    return p;
}

inline void infer_pool(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    if (in.empty() || !in[0].present()) return;
    const DType t = in[0].value->has_dtype ? in[0].value->dtype : DType::float32;
    set_output_dtype(out, 0, t);
    set_output_dtype(out, 1, DType::int64);
    if (!in[0].known_shape()) return;
    Shape os;
    pool_geometry(n, in[0].shape(), os);
    set_output(out, 0, t, os);
    set_output(out, 1, DType::int64, os);
}

template <class T>
void max_pool_typed(const Pool3& p, const T* x, T* y, std::int64_t* indices, bool column_major,
                    const ExecContext& ctx) {
    const std::int64_t in_plane = p.in[0] * p.in[1] * p.in[2], out_plane = p.out[0] * p.out[1] * p.out[2];
    ctx.parallel_for(p.planes, 1, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t c = b; c < e; ++c) {
            const T* xc = x + c * in_plane;
            T* yc = y + c * out_plane;
            for (std::int64_t o0 = 0; o0 < p.out[0]; ++o0)
                for (std::int64_t o1 = 0; o1 < p.out[1]; ++o1)
                    for (std::int64_t o2 = 0; o2 < p.out[2]; ++o2) {
                        T best = std::numeric_limits<T>::lowest();
                        std::int64_t arg = -1, a0 = 0, a1 = 0, a2 = 0;
                        for (std::int64_t k0 = 0; k0 < p.k[0]; ++k0) {
                            const std::int64_t i0 = o0 * p.s[0] - p.pb[0] + k0 * p.d[0];
                            if (i0 < 0 || i0 >= p.in[0]) continue;
                            for (std::int64_t k1 = 0; k1 < p.k[1]; ++k1) {
                                const std::int64_t i1 = o1 * p.s[1] - p.pb[1] + k1 * p.d[1];
                                if (i1 < 0 || i1 >= p.in[1]) continue;
                                const T* row = xc + (i0 * p.in[1] + i1) * p.in[2];
                                for (std::int64_t k2 = 0; k2 < p.k[2]; ++k2) {
                                    const std::int64_t i2 = o2 * p.s[2] - p.pb[2] + k2 * p.d[2];
                                    if (i2 < 0 || i2 >= p.in[2]) continue;
                                    if (arg < 0 || row[i2] > best) {
                                        best = row[i2];
                                        arg = (i0 * p.in[1] + i1) * p.in[2] + i2;
                                        a0 = i0, a1 = i1, a2 = i2;
                                    }
                                }
                            }
                        }
                        const std::int64_t o = (o0 * p.out[1] + o1) * p.out[2] + o2;
                        yc[o] = best;
                        if (indices) {
                            const std::int64_t local = column_major ? (a2 * p.in[1] + a1) * p.in[0] + a0 : arg;
                            indices[c * out_plane + o] = c * in_plane + local;
                        }
                    }
        }
    });
}

/// 2-D float max pooling without indices: per output row, the max over the window's input
/// rows is formed first (a contiguous, vectorizable pass), then the max across columns.
inline void max_pool_2d_float(const Pool3& p, const float* x, float* y, const ExecContext& ctx) {
    const std::int64_t H = p.in[1], W = p.in[2], OH = p.out[1], OW = p.out[2];
    ctx.parallel_for(p.planes, 1, [&](std::int64_t b, std::int64_t e) {
        std::vector<float> rowmax(static_cast<std::size_t>(W));
        for (std::int64_t c = b; c < e; ++c) {
            const float* xc = x + c * H * W;
            float* yc = y + c * OH * OW;
            for (std::int64_t oh = 0; oh < OH; ++oh) {
                std::fill(rowmax.begin(), rowmax.end(), std::numeric_limits<float>::lowest());
                float* __restrict rm = rowmax.data();
                for (std::int64_t kh = 0; kh < p.k[1]; ++kh) {
                    const std::int64_t ih = oh * p.s[1] - p.pb[1] + kh * p.d[1];
                    if (ih < 0 || ih >= H) continue;
                    const float* __restrict xr = xc + ih * W;
                    for (std::int64_t w = 0; w < W; ++w) rm[w] = rm[w] < xr[w] ? xr[w] : rm[w];
                }
                for (std::int64_t ow = 0; ow < OW; ++ow) {
                    float m = std::numeric_limits<float>::lowest();
                    for (std::int64_t kw = 0; kw < p.k[2]; ++kw) {
                        const std::int64_t iw = ow * p.s[2] - p.pb[2] + kw * p.d[2];
                        if (iw >= 0 && iw < W) m = m < rm[iw] ? rm[iw] : m;
                    }
                    yc[oh * OW + ow] = m;
                }
            }
        }
    });
}

#if defined(__AVX512F__)
/// AVX-512 form of max_pool_2d_float for column strides 1 and 2: the row maximum goes into
/// a buffer bordered with lowest() (the value a window of padding alone yields), so each
/// 16-wide output chunk is KW vector maxima with no bounds checks. Same results as the
/// scalar form, NaN handling included (a NaN input never replaces the running maximum).
inline bool max_pool_2d_float_avx512(const Pool3& p, const float* x, float* y, const ExecContext& ctx) {
    const std::int64_t H = p.in[1], W = p.in[2], OH = p.out[1], OW = p.out[2], KW = p.k[2], SW = p.s[2];
    const std::int64_t DW = p.d[2], PW = p.pb[2];
    constexpr std::int64_t kMaxWindowRows = 16;
    if ((SW != 1 && SW != 2) || PW < 0 || p.k[1] > kMaxWindowRows) return false;
    constexpr std::int64_t kLanes = depthwise_avx512::kLanes;
    const std::int64_t OWv = (OW + kLanes - 1) / kLanes * kLanes;
    const std::int64_t length = std::max(W + PW, SW * OWv + (KW - 1) * DW);
    const float lowest = std::numeric_limits<float>::lowest();
    ctx.parallel_for(p.planes, 1, [&](std::int64_t b, std::int64_t e) {
        std::vector<float> buffer(static_cast<std::size_t>(length), lowest);
        float* rm = buffer.data() + PW;
        for (std::int64_t c = b; c < e; ++c) {
            const float* xc = x + c * H * W;
            float* yc = y + c * OH * OW;
            for (std::int64_t oh = 0; oh < OH; ++oh) {
                // the window's valid input rows, reduced in registers (one store per chunk; a
                // store and reload of rm per row would stall on store forwarding)
                const float* rows[kMaxWindowRows];
                int valid = 0;
                for (std::int64_t kh = 0; kh < p.k[1]; ++kh) {
                    const std::int64_t ih = oh * p.s[1] - p.pb[1] + kh * p.d[1];
                    if (ih >= 0 && ih < H) rows[valid++] = xc + ih * W;
                }
                for (std::int64_t w = 0; w < W; w += kLanes) {
                    const std::int64_t left = W - w;
                    const __mmask16 m = left >= kLanes ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
                    __m512 v = _mm512_set1_ps(lowest);
                    for (int r = 0; r < valid; ++r) v = _mm512_max_ps(_mm512_maskz_loadu_ps(m, rows[r] + w), v);
                    _mm512_mask_storeu_ps(rm + w, m, v);
                }
                for (std::int64_t ow0 = 0; ow0 < OW; ow0 += kLanes) {
                    __m512 m = _mm512_set1_ps(lowest);
                    for (std::int64_t kw = 0; kw < KW; ++kw) {
                        const float* src = buffer.data() + ow0 * SW + kw * DW;
                        const __m512 v = SW == 1 ? depthwise_avx512::load_tap<1>(src) : depthwise_avx512::load_tap<2>(src);
                        m = _mm512_max_ps(v, m);
                    }
                    const std::int64_t left = OW - ow0;
                    const __mmask16 mask = left >= kLanes ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
                    _mm512_mask_storeu_ps(yc + oh * OW + ow0, mask, m);
                }
            }
        }
    });
    return true;
}
#endif

inline void run_max_pool(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                         const ExecContext& ctx, std::int64_t) {
    const Tensor& x = need(n, in, 0);
    Shape os;
    const Pool3 p = pool_geometry(n, x.shape(), os);
    out[0] = new_output(x.dtype(), os);
    std::int64_t* idx = nullptr;
    if (out.size() > 1) {
        out[1] = Tensor(DType::int64, os);
        idx = out[1].data<std::int64_t>();
    }
    const bool column_major = n.attr_int("storage_order", 0) != 0;
    if (!idx && x.dtype() == DType::float32 && p.in[0] == 1 && p.k[0] == 1) {
#if defined(__AVX512F__)
        if (max_pool_2d_float_avx512(p, x.data<float>(), out[0].data<float>(), ctx)) return;
#endif
        max_pool_2d_float(p, x.data<float>(), out[0].data<float>(), ctx);
        return;
    }
    dispatch_numeric(n, x.dtype(), [&](auto tag) {
        using T = decltype(tag);
        max_pool_typed<T>(p, x.data<T>(), out[0].data<T>(), idx, column_major, ctx);
    });
}

inline void run_average_pool(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                             const ExecContext& ctx, std::int64_t) {
    const Tensor& x = need(n, in, 0);
    check_float(n, x, "input");
    Shape os;
    const Pool3 p = pool_geometry(n, x.shape(), os);
    const bool include_pad = n.attr_int("count_include_pad", 0) != 0;
    out[0] = new_output(DType::float32, os);
    const float* xd = x.data<float>();
    float* yd = out[0].data<float>();
    const std::int64_t in_plane = p.in[0] * p.in[1] * p.in[2], out_plane = p.out[0] * p.out[1] * p.out[2];
    ctx.parallel_for(p.planes, 1, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t c = b; c < e; ++c) {
            const float* xc = xd + c * in_plane;
            float* yc = yd + c * out_plane;
            for (std::int64_t o0 = 0; o0 < p.out[0]; ++o0)
                for (std::int64_t o1 = 0; o1 < p.out[1]; ++o1)
                    for (std::int64_t o2 = 0; o2 < p.out[2]; ++o2) {
                        float sum = 0.f;
                        std::int64_t count = 1, inside = 0;
                        const std::int64_t o[3] = {o0, o1, o2};
                        // count_include_pad: every tap counts (as ONNX's reference, also the taps a
                        // ceil_mode window puts beyond the end padding); otherwise only taps inside
                        for (int a = 0; a < 3; ++a) {
                            std::int64_t cnt = 0;
                            for (std::int64_t k = 0; k < p.k[a]; ++k) {
                                const std::int64_t i = o[a] * p.s[a] - p.pb[a] + k * p.d[a];
                                cnt += include_pad || (i >= 0 && i < p.in[a]);
                            }
                            count *= cnt;
                        }
                        for (std::int64_t k0 = 0; k0 < p.k[0]; ++k0) {
                            const std::int64_t i0 = o0 * p.s[0] - p.pb[0] + k0 * p.d[0];
                            if (i0 < 0 || i0 >= p.in[0]) continue;
                            for (std::int64_t k1 = 0; k1 < p.k[1]; ++k1) {
                                const std::int64_t i1 = o1 * p.s[1] - p.pb[1] + k1 * p.d[1];
                                if (i1 < 0 || i1 >= p.in[1]) continue;
                                const float* row = xc + (i0 * p.in[1] + i1) * p.in[2];
                                for (std::int64_t k2 = 0; k2 < p.k[2]; ++k2) {
                                    const std::int64_t i2 = o2 * p.s[2] - p.pb[2] + k2 * p.d[2];
                                    if (i2 < 0 || i2 >= p.in[2]) continue;
                                    sum += row[i2];
                                    ++inside;
                                }
                            }
                        }
                        yc[(o0 * p.out[1] + o1) * p.out[2] + o2] = count > 0 ? sum / float(count) : 0.f;
                        (void)inside;
                    }
        }
    });
}

inline void infer_global_pool(const Node&, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    if (in.empty() || !in[0].present()) return;
    set_output_dtype(out, 0, DType::float32);
    if (!in[0].known_shape()) return;
    Shape s = in[0].shape();
    for (std::size_t i = 2; i < s.size(); ++i) s[i] = 1;
    set_output(out, 0, DType::float32, s);
}

template <bool Max>
void run_global_pool(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out,
                     const ExecContext& ctx, std::int64_t) {
    const Tensor& x = need(n, in, 0);
    check_float(n, x, "input");
    BPUQ_CHECK(x.rank() >= 2, "graph.shape", n.describe() + " needs an input of rank >= 2");
    Shape s = x.shape();
    for (std::size_t i = 2; i < s.size(); ++i) s[i] = 1;
    out[0] = new_output(DType::float32, s);
    const std::int64_t planes = x.dim(0) * x.dim(1), size = planes ? x.numel() / planes : 0;
    const float* xd = x.data<float>();
    float* yd = out[0].data<float>();
    ctx.parallel_for(planes, 16, [&](std::int64_t b, std::int64_t e) {
        for (std::int64_t c = b; c < e; ++c) {
            const float* p = xd + c * size;
            if (Max) {
                float m = -std::numeric_limits<float>::infinity();
                for (std::int64_t i = 0; i < size; ++i) m = std::max(m, p[i]);
                yd[c] = m;
            } else {
                float acc = 0.f;
                for (std::int64_t i = 0; i < size; ++i) acc += p[i];
                yd[c] = size ? acc / float(size) : 0.f;
            }
        }
    });
}

}  // namespace ops
}  // namespace graph

BPUQ_NAMESPACE_END
