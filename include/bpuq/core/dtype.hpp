// Element types of tensors (DType) and their mapping to C++ types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "config.hpp"

BPUQ_NAMESPACE_BEGIN

/// Element type of a Tensor. float16/bfloat16 are storage-only (upcast on load).
enum class DType : std::uint8_t {
    float32 = 0,
    float64,
    float16,
    bfloat16,
    int8,
    uint8,
    int16,
    uint16,
    int32,
    uint32,
    int64,
    uint64,
    boolean,
};

constexpr std::size_t dtype_size(DType t) noexcept {
    switch (t) {
        case DType::float32: return 4;
        case DType::float64: return 8;
        case DType::float16: return 2;
        case DType::bfloat16: return 2;
        case DType::int8: return 1;
        case DType::uint8: return 1;
        case DType::int16: return 2;
        case DType::uint16: return 2;
        case DType::int32: return 4;
        case DType::uint32: return 4;
        case DType::int64: return 8;
        case DType::uint64: return 8;
        case DType::boolean: return 1;
    }
    return 0;
}

inline const char* dtype_name(DType t) noexcept {
    switch (t) {
        case DType::float32: return "float32";
        case DType::float64: return "float64";
        case DType::float16: return "float16";
        case DType::bfloat16: return "bfloat16";
        case DType::int8: return "int8";
        case DType::uint8: return "uint8";
        case DType::int16: return "int16";
        case DType::uint16: return "uint16";
        case DType::int32: return "int32";
        case DType::uint32: return "uint32";
        case DType::int64: return "int64";
        case DType::uint64: return "uint64";
        case DType::boolean: return "bool";
    }
    return "unknown";
}

constexpr bool is_floating(DType t) noexcept {
    return t == DType::float32 || t == DType::float64 || t == DType::float16 || t == DType::bfloat16;
}

/// C++ type -> DType. The primary template names what is supported.
template <class T>
struct dtype_of {
    static_assert(sizeof(T) == 0,
                  "bpuq: no DType for this C++ type; use float, double, (u)int8/16/32/64_t or bool");
};
template <> struct dtype_of<float> { static constexpr DType value = DType::float32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::float64; };
template <> struct dtype_of<std::int8_t> { static constexpr DType value = DType::int8; };
template <> struct dtype_of<std::uint8_t> { static constexpr DType value = DType::uint8; };
template <> struct dtype_of<std::int16_t> { static constexpr DType value = DType::int16; };
template <> struct dtype_of<std::uint16_t> { static constexpr DType value = DType::uint16; };
template <> struct dtype_of<std::int32_t> { static constexpr DType value = DType::int32; };
template <> struct dtype_of<std::uint32_t> { static constexpr DType value = DType::uint32; };
template <> struct dtype_of<std::int64_t> { static constexpr DType value = DType::int64; };
template <> struct dtype_of<std::uint64_t> { static constexpr DType value = DType::uint64; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::boolean; };

template <class T>
constexpr DType dtype_v = dtype_of<typename std::remove_cv<T>::type>::value;

BPUQ_NAMESPACE_END
