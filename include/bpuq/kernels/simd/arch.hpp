// SIMD architecture tags for bpuq's kernels: xsimd arch types, their capability level, the default.
//
// A kernel is a template on an xsimd architecture type (xsimd::avx2, xsimd::sse4_1, ...) so
// every ISA variant is a distinct symbol. Kernels branch on `simd_level<Arch>` (a derived
// architecture such as xsimd::fma3<xsimd::avx2> or xsimd::avx512bw uses the widest path it
// supports) and fall back to the scalar reference when the level is `scalar` — either the
// `bpuq::simd::scalar` tag or an ISA this translation unit was not compiled for.
#pragma once

#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "../../core/config.hpp"

#if defined(__AVX2__)
#define BPUQ_SIMD_HAS_AVX2 1
#else
#define BPUQ_SIMD_HAS_AVX2 0
#endif
#if defined(__SSE4_1__)
#define BPUQ_SIMD_HAS_SSE4_1 1
#else
#define BPUQ_SIMD_HAS_SSE4_1 0
#endif

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__) && BPUQ_SIMD_HAS_AVX2
#define BPUQ_SIMD_HAS_AVX512_VNNI 1
#else
#define BPUQ_SIMD_HAS_AVX512_VNNI 0
#endif

#if BPUQ_SIMD_HAS_SSE4_1 || BPUQ_SIMD_HAS_AVX2
#define BPUQ_SIMD_HAS_X86 1
#include <immintrin.h>
#else
#define BPUQ_SIMD_HAS_X86 0
#endif

BPUQ_NAMESPACE_BEGIN
namespace simd {

/// The portable fallback: runs the scalar reference kernels (same bits, no vector code).
struct scalar {
    static constexpr const char* name() noexcept { return "scalar"; }
};

/// AVX-512 with VNNI (vpdpbusd / vpdpwssd): xsimd 8 has no type for it. Selected by this tag,
/// or by xsimd::avx512bw when the translation unit is compiled with VNNI enabled.
struct avx512_vnni : xsimd::avx512bw {
    static constexpr const char* name() noexcept { return "avx512_vnni"; }
};

/// Which of bpuq's code paths an architecture type selects.
enum class Level { scalar = 0, sse4_1 = 1, avx2 = 2, avx512_vnni = 3 };

template <class Arch>
constexpr Level simd_level_of() noexcept {
#if BPUQ_SIMD_HAS_AVX512_VNNI
    if (std::is_base_of<xsimd::avx512bw, Arch>::value) return Level::avx512_vnni;
#endif
#if BPUQ_SIMD_HAS_AVX2
    // xsimd 8's AVX-512 types derive from `generic`, not from avx2: name them explicitly
    if (std::is_base_of<xsimd::avx2, Arch>::value || std::is_base_of<xsimd::avx512f, Arch>::value) return Level::avx2;
#endif
#if BPUQ_SIMD_HAS_SSE4_1
    if (std::is_base_of<xsimd::sse4_1, Arch>::value) return Level::sse4_1;
#endif
    return Level::scalar;
}

/// The path `Arch` selects in this translation unit (scalar when its ISA is not enabled).
template <class Arch>
constexpr Level simd_level = simd_level_of<Arch>();

/// The path of the element-wise kernels (quantize, dequantize, requantize): the same levels
/// (their AVX-512 form needs only AVX-512 F/BW, which every VNNI machine has).
template <class Arch>
constexpr Level vector_level = simd_level<Arch>;

/// The best architecture the compiler flags allow (-march=native gives avx2 or wider here).
using default_arch = xsimd::default_arch;

/// Human-readable name of the path an architecture selects (for logs and benchmark labels).
template <class Arch>
constexpr const char* level_name() noexcept {
    return simd_level<Arch> == Level::avx512_vnni ? "avx512_vnni"
           : simd_level<Arch> == Level::avx2      ? "avx2"
           : simd_level<Arch> == Level::sse4_1    ? "sse4_1"
                                                  : "scalar";
}

}  // namespace simd
BPUQ_NAMESPACE_END
