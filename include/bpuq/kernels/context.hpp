// Explicit execution context of the kernels (thread count) and the fork-join loop they split work with.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"

BPUQ_NAMESPACE_BEGIN

/// What a kernel may use to run: passed explicitly, never a global. One context may be shared
/// by concurrent calls (it is read-only); each call starts and joins its own threads.
struct KernelContext {
    int threads = 1;

    static KernelContext with_threads(int n) {
        BPUQ_CHECK(n >= 1 && n <= 1024, "kernels.threads", "thread count " + std::to_string(n) + " is outside [1, 1024]");
        KernelContext c;
        c.threads = n;
        return c;
    }
};

/// Calls fn(begin, end) on disjoint contiguous ranges covering [0, count), one per thread
/// (the calling thread takes the first). Work items should be coarse (rows x channel blocks).
/// An exception thrown by any range is rethrown after all threads joined.
template <class Fn>
inline void parallel_for(const KernelContext& ctx, std::int64_t count, Fn&& fn) {
    const std::int64_t parts = std::max<std::int64_t>(1, std::min<std::int64_t>(ctx.threads, count));
    if (parts == 1) {
        if (count > 0) fn(std::int64_t(0), count);
        return;
    }
    std::vector<std::thread> pool;
    std::vector<std::exception_ptr> errors(static_cast<std::size_t>(parts));
    auto range = [&](std::int64_t p) {
        const std::int64_t b = count * p / parts, e = count * (p + 1) / parts;
#if BPUQ_HAS_EXCEPTIONS
        try {
            fn(b, e);
        } catch (...) {
            errors[static_cast<std::size_t>(p)] = std::current_exception();
        }
#else
        fn(b, e);
#endif
    };
    pool.reserve(static_cast<std::size_t>(parts - 1));
    for (std::int64_t p = 1; p < parts; ++p) pool.emplace_back(range, p);
    range(0);
    for (auto& t : pool) t.join();
#if BPUQ_HAS_EXCEPTIONS
    for (auto& e : errors)
        if (e) std::rethrow_exception(e);
#endif
}

BPUQ_NAMESPACE_END
