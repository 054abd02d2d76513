// Deterministic test distributions for the observe suite (Gaussian, Laplace, uniform, outliers).
#pragma once

#include <cmath>
#include <cstddef>
#include <random>
#include <vector>

#include "test_support.hpp"

namespace observe_test {

inline std::vector<float> gaussian(std::size_t n, float sigma = 1.0f, std::uint64_t seed = 1) {
    std::mt19937_64 g(seed);
    std::normal_distribution<float> d(0.0f, sigma);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

inline std::vector<float> laplace(std::size_t n, float b = 1.0f, std::uint64_t seed = 2) {
    std::mt19937_64 g(seed);
    std::exponential_distribution<float> e(1.0f / b);
    std::bernoulli_distribution s(0.5);
    std::vector<float> v(n);
    for (auto& x : v) x = s(g) ? e(g) : -e(g);
    return v;
}

inline std::vector<float> uniform(std::size_t n, float lo, float hi, std::uint64_t seed = 3) {
    std::mt19937_64 g(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = d(g);
    return v;
}

/// Replaces `count` evenly spaced values by +-magnitude.
inline void add_outliers(std::vector<float>& v, std::size_t count, float magnitude) {
    for (std::size_t k = 0; k < count; ++k) v[(k * 7919 + 13) % v.size()] = (k % 2 ? -magnitude : magnitude);
}

}  // namespace observe_test
