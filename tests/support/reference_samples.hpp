// Test helper: a shared model's reference inputs written as a calibration folder (one .npy per sample).
#pragma once

#include <bpuq/io/npy.hpp>

#include <filesystem>
#include <string>

#include "test_support.hpp"

namespace bpuq_test {

/// Writes reference/<model>/inputs.npy as <dir>/s<i>.npy, each of shape [1, ...], with values
/// x * a + b (a = 128, b = 128 turns the MobileNets' normalized inputs back into raw pixels).
/// The folder is emptied first; returns its path.
inline std::string write_reference_samples(const std::string& model, const std::filesystem::path& dir, float a = 1.0f,
                                           float b = 0.0f) {
    using namespace bpuq;
    const Tensor all = io::read_npy(data_dir() + "/reference/" + model + "/inputs.npy");
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    Shape one = all.shape();
    one[0] = 1;
    const std::int64_t per = all.numel() / all.dim(0);
    for (std::int64_t i = 0; i < all.dim(0); ++i) {
        Tensor s(DType::float32, one);
        for (std::int64_t k = 0; k < per; ++k) s.data<float>()[k] = all.data<float>()[i * per + k] * a + b;
        io::write_npy((dir / ("s" + std::to_string(i) + ".npy")).string(), s);
    }
    return dir.string();
}

}  // namespace bpuq_test
