// Scalar quantize / dequantize / requantize of values and whole tensors (the reference forms).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/fixed_point.hpp"
#include "../core/qparams.hpp"
#include "../core/tensor.hpp"
#include "rounding.hpp"

BPUQ_NAMESPACE_BEGIN

/// q = clamp(round(x / scale) + zp, qmin, qmax). NaN maps to the zero point (real 0); +-Inf
/// saturate. The division (not a multiplication by 1/scale) is normative.
template <class RoundingPolicy = RoundHalfAwayFromZero>
inline std::int32_t quantize_value(float x, float scale, std::int32_t zero_point, std::int32_t qmin,
                                   std::int32_t qmax) noexcept {
    float v = x / scale;
    if (v != v) return zero_point;
    v = round_float<RoundingPolicy>(v);
    // Clamp in the float domain to [qmin - zp, qmax - zp] (exact small integers), then add
    // the zero point in integers: equal to clamp(round(v) + zp) without any overflow.
    const float lo = static_cast<float>(qmin - zero_point);
    const float hi = static_cast<float>(qmax - zero_point);
    v = v < lo ? lo : (v > hi ? hi : v);
    return static_cast<std::int32_t>(v) + zero_point;
}

/// x = (q - zp) * scale.
inline float dequantize_value(std::int32_t q, float scale, std::int32_t zero_point) noexcept {
    return static_cast<float>(q - zero_point) * scale;
}

/// Calls fn(channel, offset, length) for every contiguous run of elements that share one
/// channel of `axis` (or once for the whole tensor when axis < 0). Per-channel tensor ops are
/// written once on top of this and a contiguous-span kernel.
template <class Fn>
inline void for_each_channel_run(const Shape& shape, int axis, std::size_t channels, Fn&& fn) {
    const std::int64_t n = shape_numel(shape);
    if (axis < 0) {
        fn(std::size_t(0), std::int64_t(0), n);
        return;
    }
    BPUQ_CHECK(static_cast<std::size_t>(axis) < shape.size(), "qparams.axis",
               "quantization axis " + std::to_string(axis) + " is out of range for shape " + shape_to_string(shape));
    BPUQ_CHECK(static_cast<std::size_t>(shape[static_cast<std::size_t>(axis)]) == channels, "qparams.channels",
               "tensor of shape " + shape_to_string(shape) + " has " + std::to_string(shape[static_cast<std::size_t>(axis)]) +
                   " channels on axis " + std::to_string(axis) + " but the parameters have " + std::to_string(channels));
    std::int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; ++i) outer *= shape[static_cast<std::size_t>(i)];
    for (std::size_t i = static_cast<std::size_t>(axis) + 1; i < shape.size(); ++i) inner *= shape[i];
    const auto c_count = static_cast<std::int64_t>(channels);
    for (std::int64_t o = 0; o < outer; ++o)
        for (std::int64_t c = 0; c < c_count; ++c) fn(static_cast<std::size_t>(c), (o * c_count + c) * inner, inner);
}

namespace reference {

/// Quantize a contiguous span with one scale / zero point.
template <class RoundingPolicy = RoundHalfAwayFromZero, class Q>
inline void quantize_span(const float* in, Q* out, std::int64_t n, float scale, std::int32_t zp,
                          std::int32_t qmin, std::int32_t qmax) noexcept {
    for (std::int64_t i = 0; i < n; ++i)
        out[i] = static_cast<Q>(quantize_value<RoundingPolicy>(in[i], scale, zp, qmin, qmax));
}

template <class Q>
inline void dequantize_span(const Q* in, float* out, std::int64_t n, float scale, std::int32_t zp) noexcept {
    for (std::int64_t i = 0; i < n; ++i) out[i] = dequantize_value(in[i], scale, zp);
}

/// Rescale a quantized span: out = clamp(zp_out + round((q - zp_in) * M)), M as multiplier+shift.
template <class RoundingPolicy = RoundHalfAwayFromZero, class QIn, class QOut>
inline void requantize_span(const QIn* in, QOut* out, std::int64_t n, std::int32_t zp_in,
                            const QuantizedMultiplier& qm, std::int32_t zp_out, std::int32_t qmin,
                            std::int32_t qmax) noexcept {
    for (std::int64_t i = 0; i < n; ++i)
        out[i] = static_cast<QOut>(
            requantize_value<RoundingPolicy>(static_cast<std::int32_t>(in[i]) - zp_in, qm, zp_out, qmin, qmax));
}

}  // namespace reference

namespace detail {
inline void check_same_count(const Tensor& a, const Tensor& b, const char* op) {
    BPUQ_CHECK(a.numel() == b.numel(), "shape.mismatch",
               std::string(op) + ": input " + shape_to_string(a.shape()) + " and output " +
                   shape_to_string(b.shape()) + " differ in element count");
}
inline void check_storage(const QParams& p, DType t, const char* op) {
    const bool ok = (p.bits == 8 && t == DType::int8) || (p.bits == 16 && t == DType::int16);
    BPUQ_CHECK(ok, "tensor.dtype",
               std::string(op) + ": " + std::to_string(p.bits) + "-bit parameters need an int" +
                   std::to_string(p.bits) + " tensor, got " + dtype_name(t));
}
}  // namespace detail

/// Quantize a float32 tensor into an int8 or int16 tensor of the same shape (scalar reference).
template <class RoundingPolicy = RoundHalfAwayFromZero>
inline void quantize_tensor(const Tensor& in, Tensor& out, const QParams& p) {
    detail::check_same_count(in, out, "quantize");
    detail::check_storage(p, out.dtype(), "quantize");
    const float* src = in.data<float>();
    for_each_channel_run(in.shape(), p.axis, p.channels(), [&](std::size_t c, std::int64_t off, std::int64_t len) {
        if (p.bits == 8)
            reference::quantize_span<RoundingPolicy>(src + off, out.data<std::int8_t>() + off, len, p.scale[c],
                                                     p.zero_point[c], p.qmin(), p.qmax());
        else
            reference::quantize_span<RoundingPolicy>(src + off, out.data<std::int16_t>() + off, len, p.scale[c],
                                                     p.zero_point[c], p.qmin(), p.qmax());
    });
}

/// Quantize into a freshly allocated tensor.
template <class RoundingPolicy = RoundHalfAwayFromZero>
inline Tensor quantize_tensor(const Tensor& in, const QParams& p) {
    Tensor out(p.bits == 16 ? DType::int16 : DType::int8, in.shape());
    quantize_tensor<RoundingPolicy>(in, out, p);
    return out;
}

/// Dequantize an int8/int16 tensor to float32.
inline Tensor dequantize_tensor(const Tensor& in, const QParams& p) {
    detail::check_storage(p, in.dtype(), "dequantize");
    Tensor out(DType::float32, in.shape());
    float* dst = out.data<float>();
    for_each_channel_run(in.shape(), p.axis, p.channels(), [&](std::size_t c, std::int64_t off, std::int64_t len) {
        if (p.bits == 8)
            reference::dequantize_span(in.data<std::int8_t>() + off, dst + off, len, p.scale[c], p.zero_point[c]);
        else
            reference::dequantize_span(in.data<std::int16_t>() + off, dst + off, len, p.scale[c], p.zero_point[c]);
    });
    return out;
}

/// The multiplier that maps scale `from` onto scale `to`: M = from / to.
inline QuantizedMultiplier rescale_multiplier(float from, float to) {
    return quantize_multiplier(static_cast<double>(from) / static_cast<double>(to));
}

/// Requantize a quantized tensor from parameters `from` to `to` (per-tensor target; the source
/// may be per-channel, e.g. to unify the scales of a Concat's inputs).
template <class RoundingPolicy = RoundHalfAwayFromZero>
inline Tensor requantize_tensor(const Tensor& in, const QParams& from, const QParams& to) {
    detail::check_storage(from, in.dtype(), "requantize");
    BPUQ_CHECK(!to.per_channel(), "qparams.axis", "requantize: the target parameters must be per-tensor");
    Tensor out(to.bits == 16 ? DType::int16 : DType::int8, in.shape());
    for_each_channel_run(in.shape(), from.axis, from.channels(), [&](std::size_t c, std::int64_t off, std::int64_t len) {
        const QuantizedMultiplier qm = rescale_multiplier(from.scale[c], to.scale[0]);
        auto run = [&](auto* src) {
            if (to.bits == 8)
                reference::requantize_span<RoundingPolicy>(src + off, out.data<std::int8_t>() + off, len,
                                                           from.zero_point[c], qm, to.zero_point[0], to.qmin(), to.qmax());
            else
                reference::requantize_span<RoundingPolicy>(src + off, out.data<std::int16_t>() + off, len,
                                                           from.zero_point[c], qm, to.zero_point[0], to.qmin(), to.qmax());
        };
        if (from.bits == 8) run(in.data<std::int8_t>());
        else run(in.data<std::int16_t>());
    });
    return out;
}

/// w * f or w / f (`divide`), f broadcast to w's shape (each dimension of f is w's or 1): the
/// per-input-channel scales folded into (or out of) the weights of a node whose input is
/// quantized per channel (calib/weights.hpp), computed in double and rounded once to float.
inline Tensor apply_fold(const Tensor& w, const Tensor& f, bool divide) {
    BPUQ_CHECK(w.dtype() == DType::float32 && f.dtype() == DType::float32 && f.rank() == w.rank(), "quant.fold",
               "fold factors " + shape_to_string(f.shape()) + " do not broadcast to weights " + shape_to_string(w.shape()));
    std::vector<std::int64_t> fstride(w.rank(), 0);
    std::int64_t st = 1;
    for (std::size_t d = w.rank(); d-- > 0;) {
        BPUQ_CHECK(f.dim(d) == w.dim(d) || f.dim(d) == 1, "quant.fold",
                   "fold factors " + shape_to_string(f.shape()) + " do not broadcast to weights " + shape_to_string(w.shape()));
        fstride[d] = f.dim(d) == 1 ? 0 : st;
        st *= f.dim(d);
    }
    Tensor out(DType::float32, w.shape());
    const float* src = w.data<float>();
    const float* fv = f.data<float>();
    float* dst = out.data<float>();
    // the usual case, factors along one axis ([1, C, 1, 1] for OIHW weights): [outer][C][inner]
    // loops whose inner run has one factor (same per-element arithmetic as the general loop)
    std::size_t varying = w.rank(), count = 0;
    for (std::size_t d = 0; d < w.rank(); ++d)
        if (f.dim(d) != 1) varying = d, ++count;
    if (count <= 1) {
        std::int64_t outer = 1, inner = 1;
        const std::int64_t mid = count ? w.dim(varying) : 1;
        for (std::size_t d = 0; d < w.rank(); ++d) {
            if (count && d < varying) outer *= w.dim(d);
            if (!count || d > varying) inner *= w.dim(d);
        }
        for (std::int64_t o = 0; o < outer; ++o)
            for (std::int64_t c = 0; c < mid; ++c) {
                const double factor = double(fv[c]);
                const std::int64_t base = (o * mid + c) * inner;
                if (divide)
                    for (std::int64_t i = 0; i < inner; ++i) dst[base + i] = static_cast<float>(double(src[base + i]) / factor);
                else
                    for (std::int64_t i = 0; i < inner; ++i) dst[base + i] = static_cast<float>(double(src[base + i]) * factor);
            }
        return out;
    }
    std::vector<std::int64_t> idx(w.rank(), 0);
    for (std::int64_t i = 0; i < w.numel(); ++i) {
        std::int64_t fi = 0;
        for (std::size_t d = 0; d < w.rank(); ++d) fi += idx[d] * fstride[d];
        dst[i] = divide ? static_cast<float>(double(src[i]) / double(fv[fi])) : static_cast<float>(double(src[i]) * double(fv[fi]));
        for (std::size_t d = w.rank(); d-- > 0;) {
            if (++idx[d] < w.dim(d)) break;
            idx[d] = 0;
        }
    }
    return out;
}

BPUQ_NAMESPACE_END
