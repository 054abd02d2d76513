// Feature macros and overridable error hooks shared by every bpuq header.
#pragma once

// Every feature macro is defined to 0 or 1 and tested with #if, so -Wundef catches typos.

// Exceptions: host-side layers throw bpuq::Error; firmware builds (-fno-exceptions) get
// status codes from the runtime and BPUQ_THROW becomes a call to BPUQ_ABORT.
#ifndef BPUQ_HAS_EXCEPTIONS
#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define BPUQ_HAS_EXCEPTIONS 1
#else
#define BPUQ_HAS_EXCEPTIONS 0
#endif
#endif

// xsimd is optional everywhere except kernels/simd; the single header uses it only if asked.
#ifndef BPUQ_HAS_XSIMD
#if defined(__has_include)
#if __has_include(<xsimd/xsimd.hpp>)
#define BPUQ_HAS_XSIMD 1
#else
#define BPUQ_HAS_XSIMD 0
#endif
#else
#define BPUQ_HAS_XSIMD 0
#endif
#endif

#define BPUQ_VERSION_MAJOR 0
#define BPUQ_VERSION_MINOR 1
#define BPUQ_VERSION_PATCH 0

// ABI tag: everything lives in bpuq::v0_1. A TU that mixes two bpuq versions gets
// distinct symbols instead of an ODR violation.
#define BPUQ_NAMESPACE_BEGIN \
    namespace bpuq {         \
    inline namespace v0_1 {
#define BPUQ_NAMESPACE_END \
    }                      \
    }

// Called when an error cannot be reported by exception (firmware build). Override to hook
// a board-specific fault handler; it must not return.
#ifndef BPUQ_ABORT
#include <cstdio>
#include <cstdlib>
#define BPUQ_ABORT(msg)                                    \
    do {                                                   \
        std::fputs("bpuq fatal: ", stderr);                \
        std::fputs(msg, stderr);                           \
        std::fputs("\n", stderr);                          \
        std::abort();                                      \
    } while (0)
#endif

// Internal invariants (programming errors, not bad input). Off in NDEBUG like assert().
#ifndef BPUQ_ASSERT
#include <cassert>
#define BPUQ_ASSERT(cond) assert(cond)
#endif

#if defined(__GNUC__) || defined(__clang__)
#define BPUQ_LIKELY(x) __builtin_expect(!!(x), 1)
#define BPUQ_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define BPUQ_LIKELY(x) (x)
#define BPUQ_UNLIKELY(x) (x)
#endif
