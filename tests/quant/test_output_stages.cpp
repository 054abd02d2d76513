// The requantization output pipeline equals the normative requantize_value formula.
#include <doctest/doctest.h>

#include <bpuq/quant/output_stages.hpp>

#include <random>

#include "test_support.hpp"

using namespace bpuq;

TEST_CASE("bias -> fixed-point scale -> zero point -> clamp -> cast, per channel") {
    auto& g = bpuq_test::rng();
    std::uniform_real_distribution<double> m(1e-5, 4.0);
    std::uniform_int_distribution<std::int32_t> acc(-(1 << 24), 1 << 24);
    const std::vector<std::int32_t> bias{100, -2000, 0, 77};
    std::vector<QuantizedMultiplier> qm;
    for (int c = 0; c < 4; ++c) qm.push_back(quantize_multiplier(m(g)));
    const auto relu = make_requantize_pipeline<std::int8_t>(bias.data(), qm.data(), true, -5, -5, 127);
    const auto plain16 = make_requantize_pipeline<std::int16_t>(nullptr, qm.data(), false, 0, -32768, 32767);
    for (int i = 0; i < 100000; ++i) {
        const std::size_t c = static_cast<std::size_t>(i % 4);
        const std::int32_t a = acc(g);
        const std::int8_t y = relu(a, c);
        REQUIRE(y == requantize_value(a + bias[c], qm[c], -5, -5, 127));
        REQUIRE(plain16(a, c) == requantize_value(a, qm[0], 0, -32768, 32767));
    }
    // int64 accumulators of int16 layers go through the same stages
    const auto wide = make_requantize_pipeline<std::int16_t>(nullptr, qm.data(), false, 0, -32768, 32767);
    CHECK(wide(std::int64_t(1) << 50, 0) == 32767);
    CHECK(wide(-(std::int64_t(1) << 50), 0) == -32768);
}
