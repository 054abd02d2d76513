// Compile-time policies: derived types and traits of QuantSpec (misuse is checked by compile-fail tests).
#include <doctest/doctest.h>

#include <bpuq/core/quant_spec.hpp>

#include <string>
#include <type_traits>

using namespace bpuq;

TEST_CASE("QuantSpec derives storage and accumulator types from the bit width") {
    using S8 = QuantSpec<8, Asymmetric, PerChannel<1>, RoundHalfToEven>;
    static_assert(std::is_same<S8::storage_type, std::int8_t>::value, "");
    static_assert(std::is_same<S8::accumulator_type, std::int32_t>::value, "");
    static_assert(!S8::is_symmetric && S8::is_per_channel && S8::axis == 1, "");
    using S16 = QuantSpec<16>;
    static_assert(std::is_same<S16::storage_type, std::int16_t>::value, "");
    static_assert(std::is_same<S16::accumulator_type, std::int64_t>::value, "");
    static_assert(S16::is_symmetric && !S16::is_per_channel && S16::axis == -1, "");
    static_assert(rounding_of<S8::rounding>() == Rounding::half_to_even, "");
    static_assert(rounding_of<S16::rounding>() == Rounding::half_away_from_zero, "");
    CHECK(S8::qmin == -128);
    CHECK(S16::qmax == 32767);
    CHECK(std::string(WeightSpecI8::granularity::name) == "per-channel");
}
