// Quantizer<Spec>: the typed front end that binds a QuantSpec to runtime QParams.
#pragma once

#include <string>
#include <vector>

#include "../core/quant_spec.hpp"
#include "quantize.hpp"

BPUQ_NAMESPACE_BEGIN

/// A quantizer for one tensor. The Spec fixes bits, symmetry, granularity and rounding at
/// compile time; the scales are runtime data checked against the Spec on construction.
template <class Spec>
class Quantizer {
public:
    using spec = Spec;
    using storage_type = typename Spec::storage_type;
    using rounding = typename Spec::rounding;

    /// Validates that `params` fits the Spec (bit width, symmetry, per-channel axis).
    explicit Quantizer(QParams params) : params_(std::move(params)) {
        BPUQ_CHECK(params_.bits == Spec::bits, "qparams.bits",
                   "Quantizer<" + std::to_string(Spec::bits) + "-bit> given " + std::to_string(params_.bits) +
                       "-bit parameters");
        BPUQ_CHECK(params_.symmetric == Spec::is_symmetric, "qparams.symmetry",
                   std::string("Quantizer is ") + Spec::symmetry::name + " but the parameters are not");
        BPUQ_CHECK(params_.axis == Spec::axis, "qparams.axis",
                   "Quantizer expects axis " + std::to_string(Spec::axis) + " (" + Spec::granularity::name +
                       "), parameters have axis " + std::to_string(params_.axis));
        BPUQ_CHECK(params_.scale.size() == params_.zero_point.size() && !params_.scale.empty(), "qparams.channels",
                   "scales and zero points differ in count");
    }

    /// Per-tensor quantizer covering [rmin, rmax].
    static Quantizer from_range(float rmin, float rmax, bool narrow = false) {
        static_assert(!Spec::is_per_channel, "bpuq: a per-channel Quantizer needs from_ranges(mins, maxs)");
        return Quantizer(qparams_from_range(rmin, rmax, Spec::bits, Spec::is_symmetric, narrow));
    }

    /// Per-channel quantizer with one range per channel of Spec::axis.
    static Quantizer from_ranges(const std::vector<float>& rmin, const std::vector<float>& rmax, bool narrow = false) {
        static_assert(Spec::is_per_channel, "bpuq: a per-tensor Quantizer takes one range: use from_range");
        return Quantizer(qparams_from_ranges(rmin, rmax, Spec::axis, Spec::bits, Spec::is_symmetric, narrow));
    }

    storage_type quantize(float x, std::size_t channel = 0) const noexcept {
        return static_cast<storage_type>(quantize_value<rounding>(x, params_.scale[channel], params_.zero_point[channel],
                                                                  params_.qmin(), params_.qmax()));
    }
    float dequantize(storage_type q, std::size_t channel = 0) const noexcept {
        return dequantize_value(q, params_.scale[channel], params_.zero_point[channel]);
    }
    /// quantize then dequantize: the fake-quant value the calibrated model computes.
    float fake_quantize(float x, std::size_t channel = 0) const noexcept { return dequantize(quantize(x, channel), channel); }

    Tensor quantize(const Tensor& x) const { return quantize_tensor<rounding>(x, params_); }
    Tensor dequantize(const Tensor& q) const { return dequantize_tensor(q, params_); }

    const QParams& params() const noexcept { return params_; }

private:
    QParams params_;
};

BPUQ_NAMESPACE_END
