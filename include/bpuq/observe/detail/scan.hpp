// One-pass batch statistics (min, max, max |x|, finiteness) on float bit patterns.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "../../core/config.hpp"
#include "../../core/error.hpp"

BPUQ_NAMESPACE_BEGIN
namespace detail {

// Why integers: for non-negative floats the IEEE bit pattern orders like the value, and
// `bits ^ ((bits >> 31) & 0x7fffffff)` (as int32) orders every finite float like its value.
// Integer min/max reductions vectorize without -ffast-math and see NaN/Inf as large keys,
// so a single pass gives the range and the finiteness check.
constexpr std::uint32_t kAbsMask = 0x7fffffffu;
constexpr std::uint32_t kInfBits = 0x7f800000u;

inline std::int32_t float_order_key(float x) noexcept {
    std::int32_t b;
    std::memcpy(&b, &x, sizeof b);
    return b ^ ((b >> 31) & 0x7fffffff);
}
inline float float_from_order_key(std::int32_t k) noexcept {
    const std::int32_t b = k ^ ((k >> 31) & 0x7fffffff);
    float x;
    std::memcpy(&x, &b, sizeof x);
    return x;
}
inline float float_from_bits(std::uint32_t b) noexcept {
    float x;
    std::memcpy(&x, &b, sizeof x);
    return x;
}

/// Running statistics of one or more spans; combine() merges two.
struct BatchStats {
    std::int32_t min_key = 0x7fffffff;  // key of +NaN: above everything
    std::int32_t max_key = -0x7fffffff - 1;
    std::uint32_t abs_bits = 0;  // bit pattern of max |x|
    std::uint64_t count = 0;

    bool empty() const noexcept { return count == 0; }
    bool finite() const noexcept { return abs_bits < kInfBits; }
    float min() const noexcept { return float_from_order_key(min_key); }
    float max() const noexcept { return float_from_order_key(max_key); }
    float absmax() const noexcept { return float_from_bits(abs_bits); }
    void combine(const BatchStats& o) noexcept {
        min_key = o.min_key < min_key ? o.min_key : min_key;
        max_key = o.max_key > max_key ? o.max_key : max_key;
        abs_bits = o.abs_bits > abs_bits ? o.abs_bits : abs_bits;
        count += o.count;
    }
};

/// Accumulate min/max/absmax of x[0..n) into `s` (NaN and Inf show up as !s.finite()).
inline void scan_span(const float* x, std::size_t n, BatchStats& s) noexcept {
    std::int32_t lo = s.min_key, hi = s.max_key;
    std::uint32_t am = s.abs_bits;
    for (std::size_t i = 0; i < n; ++i) {
        std::int32_t b;
        std::memcpy(&b, x + i, sizeof b);
        const std::int32_t k = b ^ ((b >> 31) & 0x7fffffff);
        const std::uint32_t a = static_cast<std::uint32_t>(b) & kAbsMask;
        lo = k < lo ? k : lo;
        hi = k > hi ? k : hi;
        am = a > am ? a : am;
    }
    s.min_key = lo;
    s.max_key = hi;
    s.abs_bits = am;
    s.count += n;
}

/// Number of NaN/Inf values (only called to build an error message).
inline std::uint64_t count_nonfinite(const float* x, std::size_t n) noexcept {
    std::uint64_t c = 0;
    for (std::size_t i = 0; i < n; ++i) c += std::isfinite(x[i]) ? 0u : 1u;
    return c;
}

/// The observe.nonfinite error: which observer, how many values out of how many.
[[noreturn]] inline void throw_nonfinite(const std::string& who, std::uint64_t bad, std::uint64_t total) {
    BPUQ_THROW("observe.nonfinite", who + ": " + std::to_string(bad) + " of " + std::to_string(total) +
                                        " observed values are NaN or Inf; calibration data and activations "
                                        "must be finite");
#if !BPUQ_HAS_EXCEPTIONS
    std::abort();
#endif
}

}  // namespace detail
BPUQ_NAMESPACE_END
