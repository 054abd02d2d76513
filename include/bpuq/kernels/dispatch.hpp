// Arch-free entry points: the best SIMD path this build contains that the running CPU supports.
//
// The simd:: kernels are templates on an architecture; code above the template watershed (the
// integer program, the executors) calls these functions instead. The choice is made per call
// from the compile-time paths (what -m flags allowed) and the CPU's reported features, so a
// binary built with -march=native on an AVX-512 machine degrades to AVX2 or to the scalar
// reference elsewhere instead of faulting. Every path gives the same bits.
#pragma once

#include <cstdint>

#include "simd/conv2d.hpp"
#include "simd/quantize.hpp"

BPUQ_NAMESPACE_BEGIN
namespace dispatch {

using simd::Level;

/// The widest path compiled into this translation unit.
constexpr Level compiled_level() noexcept { return simd::simd_level<simd::default_arch>; }

/// Whether the running CPU can execute a path (GCC/Clang x86: __builtin_cpu_supports).
inline bool cpu_supports(Level level) noexcept {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
    switch (level) {
        case Level::avx512_vnni:
            return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
        case Level::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case Level::sse4_1: return __builtin_cpu_supports("sse4.1");
        case Level::scalar: return true;
    }
    return false;
#else
    return level == Level::scalar;
#endif
}

/// The path the functions below take: the widest compiled one the CPU supports.
inline Level active_level() noexcept {
    const int top = static_cast<int>(compiled_level());
    for (int l = top; l > 0; --l)
        if (cpu_supports(static_cast<Level>(l))) return static_cast<Level>(l);
    return Level::scalar;
}

inline const char* level_name(Level l) noexcept {
    switch (l) {
        case Level::avx512_vnni: return "avx512_vnni";
        case Level::avx2: return "avx2";
        case Level::sse4_1: return "sse4_1";
        default: return "scalar";
    }
}

namespace detail {
/// Calls fn(arch tag) with the tag of the active level.
template <class Fn>
inline void with_active_arch(Fn&& fn) {
    switch (active_level()) {
        case Level::avx512_vnni: fn(simd::avx512_vnni{}); break;
        case Level::avx2: fn(xsimd::avx2{}); break;
        case Level::sse4_1: fn(xsimd::sse4_1{}); break;
        default: fn(simd::scalar{}); break;
    }
}
}  // namespace detail

template <class Round = RoundHalfAwayFromZero, class Q>
inline void quantize_span(const float* in, Q* out, std::int64_t n, float scale, std::int32_t zp, std::int32_t qmin,
                          std::int32_t qmax) {
    detail::with_active_arch([&](auto arch) {
        simd::quantize_span<decltype(arch), Round>(in, out, n, scale, zp, qmin, qmax);
    });
}

template <class Q>
inline void dequantize_span(const Q* in, float* out, std::int64_t n, float scale, std::int32_t zp) {
    detail::with_active_arch([&](auto arch) { simd::dequantize_span<decltype(arch)>(in, out, n, scale, zp); });
}

template <class Round = RoundHalfAwayFromZero, class QIn, class QOut>
inline void requantize_span(const QIn* in, QOut* out, std::int64_t n, std::int32_t zp_in, const QuantizedMultiplier& qm,
                            std::int32_t zp_out, std::int32_t qmin, std::int32_t qmax) {
    detail::with_active_arch([&](auto arch) {
        simd::requantize_span<decltype(arch), Round>(in, out, n, zp_in, qm, zp_out, qmin, qmax);
    });
}

template <class Round = RoundHalfAwayFromZero>
inline Tensor quantize_tensor(const Tensor& in, const QParams& p) {
    Tensor out;
    detail::with_active_arch([&](auto arch) { out = simd::quantize_tensor<decltype(arch), Round>(in, p); });
    return out;
}

inline Tensor dequantize_tensor(const Tensor& in, const QParams& p) {
    Tensor out;
    detail::with_active_arch([&](auto arch) { out = simd::dequantize_tensor<decltype(arch)>(in, p); });
    return out;
}

template <class Round = RoundHalfAwayFromZero, class TIn, class TOut>
inline void conv2d(const KernelContext& ctx, const Conv2dGeometry& g, const TIn* input, std::int32_t input_zero_point,
                   const simd::PackedConvWeights& w, const Requantization& rq, TOut* output) {
    detail::with_active_arch([&](auto arch) {
        simd::conv2d<decltype(arch), Round>(ctx, g, input, input_zero_point, w, rq, output);
    });
}

template <class Round = RoundHalfAwayFromZero, class TA, class TOut>
inline void gemm(const KernelContext& ctx, const GemmGeometry& g, const TA* a, std::int32_t zp_a,
                 const simd::PackedConvWeights& b, const Requantization& rq, TOut* c) {
    detail::with_active_arch([&](auto arch) { simd::gemm<decltype(arch), Round>(ctx, g, a, zp_a, b, rq, c); });
}

}  // namespace dispatch
BPUQ_NAMESPACE_END
