// QuantSpec<Bits, Symmetry, Granularity, Rounding>: the compile-time description of a quantizer.
#pragma once

#include "bit_traits.hpp"
#include "policy.hpp"

BPUQ_NAMESPACE_BEGIN

/// Everything that changes generated code about a quantized tensor. Scales, zero points and
/// channel counts are runtime data (QParams); only these four choices are template arguments.
template <int Bits, class Symmetry = Symmetric, class Granularity = PerTensor,
          class RoundingPolicy = RoundHalfAwayFromZero>
struct QuantSpec {
    static_assert(Bits == 8 || Bits == 16,
                  "bpuq: QuantSpec<Bits, ...> needs Bits = 8 or 16 (the BPU's int8/int16)");
    static_assert(is_symmetry_policy<Symmetry>::value,
                  "bpuq: QuantSpec's second argument must be Symmetric or Asymmetric");
    static_assert(is_granularity_policy<Granularity>::value,
                  "bpuq: QuantSpec's third argument must be PerTensor or PerChannel<Axis>");
    static_assert(is_rounding_policy<RoundingPolicy>::value,
                  "bpuq: QuantSpec's fourth argument must be RoundHalfAwayFromZero or "
                  "RoundHalfToEven");
    static_assert(Bits == 8 || Symmetry::is_symmetric,
                  "bpuq: 16-bit tensors are symmetric on the BPU (zero point 0); use "
                  "QuantSpec<16, Symmetric, ...>");

    using traits = BitTraits<Bits>;
    using storage_type = typename traits::storage_type;
    using accumulator_type = typename traits::accumulator_type;
    using symmetry = Symmetry;
    using granularity = Granularity;
    using rounding = RoundingPolicy;

    static constexpr int bits = Bits;
    static constexpr bool is_symmetric = Symmetry::is_symmetric;
    static constexpr bool is_per_channel = Granularity::is_per_channel;
    static constexpr int axis = Granularity::axis;
    static constexpr std::int32_t qmin = traits::qmin;
    static constexpr std::int32_t qmax = traits::qmax;
};

/// The specs the converter uses by default.
using ActivationSpecI8 = QuantSpec<8, Symmetric, PerTensor>;
using ActivationSpecI16 = QuantSpec<16, Symmetric, PerTensor>;
using WeightSpecI8 = QuantSpec<8, Symmetric, PerChannel<0>>;

BPUQ_NAMESPACE_END
