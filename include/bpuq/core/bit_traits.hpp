// Storage and accumulator types derived from a bit width at compile time.
#pragma once

#include <cstdint>

#include "config.hpp"

BPUQ_NAMESPACE_BEGIN

/// Primary template is a diagnosis: only 8- and 16-bit integers exist on the BPU.
template <int Bits>
struct BitTraits {
    static_assert(Bits == 8 || Bits == 16,
                  "bpuq: the BPU supports 8- or 16-bit quantized tensors (BitTraits<8> or "
                  "BitTraits<16>)");
};

template <>
struct BitTraits<8> {
    using storage_type = std::int8_t;
    using unsigned_storage_type = std::uint8_t;
    /// int8 x int8 products sum safely in int32 for any realistic reduction length
    /// (2^31 / 2^14 = 131072 terms at worst).
    using accumulator_type = std::int32_t;
    static constexpr int bits = 8;
    static constexpr std::int32_t qmin = -128;
    static constexpr std::int32_t qmax = 127;
    /// Symmetric weights use [-127, 127] so that negation never overflows.
    static constexpr std::int32_t narrow_qmin = -127;
};

template <>
struct BitTraits<16> {
    using storage_type = std::int16_t;
    using unsigned_storage_type = std::uint16_t;
    /// int16 x int16 products reach 2^30; two of them overflow int32, so accumulate in int64.
    using accumulator_type = std::int64_t;
    static constexpr int bits = 16;
    static constexpr std::int32_t qmin = -32768;
    static constexpr std::int32_t qmax = 32767;
    static constexpr std::int32_t narrow_qmin = -32767;
};

/// Runtime bit-width queries for code above the template watershed.
constexpr std::int32_t qmin_of(int bits) noexcept { return bits == 16 ? -32768 : -128; }
constexpr std::int32_t qmax_of(int bits) noexcept { return bits == 16 ? 32767 : 127; }

BPUQ_NAMESPACE_END
