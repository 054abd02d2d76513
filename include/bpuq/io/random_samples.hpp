// Random model inputs for calibration_type: skip (a speed check, never a real calibration):
// image inputs get uniform integer pixels 0..255, feature maps standard normal values.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "calibration_data.hpp"

BPUQ_NAMESPACE_BEGIN
namespace io {

/// `n` random samples for each input of `specs` (deterministic for a seed). pixels[i] selects
/// 0..255 integer pixels for input i, else N(0, 1) values.
inline CalibrationSet random_calibration_set(const std::vector<CalibrationInputSpec>& specs, const std::vector<bool>& pixels,
                                             std::size_t n, std::uint64_t seed = 0x5EEDu) {
    BPUQ_CHECK(pixels.size() == specs.size() && n > 0, "calibration.random", "random samples need one kind per input and n > 0");
    std::mt19937_64 gen(seed);
    std::uniform_int_distribution<int> pixel(0, 255);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<std::vector<Tensor>> samples(specs.size());
    for (std::size_t s = 0; s < n; ++s)
        for (std::size_t i = 0; i < specs.size(); ++i) {
            Tensor t(DType::float32, specs[i].shape);
            float* p = t.data<float>();
            for (std::int64_t k = 0; k < t.numel(); ++k) p[k] = pixels[i] ? static_cast<float>(pixel(gen)) : normal(gen);
            samples[i].push_back(std::move(t));
        }
    return CalibrationSet::in_memory(specs, std::move(samples));
}

}  // namespace io
BPUQ_NAMESPACE_END
