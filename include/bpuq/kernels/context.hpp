// Explicit execution context of the kernels (thread count, persistent worker pool) and the fork-join loop they split work with.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../core/config.hpp"
#include "../core/error.hpp"

BPUQ_NAMESPACE_BEGIN

/// A fixed set of worker threads that run one fork-join job at a time. It belongs to whoever
/// holds it (a KernelContext made by with_threads, shared by its copies) — there is no global
/// pool. Workers wait for a job briefly spinning, then sleeping on a condition variable, so a
/// sequence of small kernels does not pay a thread start (or a sleep/wake) per call.
class KernelThreadPool {
public:
    /// `threads` counts the calling thread: threads - 1 workers are started.
    explicit KernelThreadPool(int threads) : size_(std::max(1, threads)) {
        workers_.reserve(static_cast<std::size_t>(size_ - 1));
        for (int i = 1; i < size_; ++i) workers_.emplace_back([this, i] { worker(i); });
    }
    KernelThreadPool(const KernelThreadPool&) = delete;
    KernelThreadPool& operator=(const KernelThreadPool&) = delete;
    ~KernelThreadPool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
            generation_.fetch_add(1, std::memory_order_release);
        }
        wake_.notify_all();
        for (auto& t : workers_) t.join();
    }

    /// Threads a job can use, the caller included.
    int size() const noexcept { return size_; }

    /// Runs task(p) for every p in [0, parts) (parts <= size()), part 0 on the calling thread,
    /// and returns when all parts finished. Returns false without running anything when the
    /// pool is already running a job (a concurrent or nested call): the caller then runs the
    /// work itself. `task` must not throw (parallel_for catches inside it).
    template <class Task>
    bool try_run(int parts, Task& task) {
        std::unique_lock<std::mutex> job(job_mutex_, std::try_to_lock);
        if (!job.owns_lock()) return false;
        parts = std::max(1, std::min(parts, size_));
        if (parts > 1) {
            std::lock_guard<std::mutex> lock(mutex_);
            invoke_ = [](void* t, int p) { (*static_cast<Task*>(t))(p); };
            task_ = &task;
            parts_ = parts;
            pending_.store(parts - 1, std::memory_order_relaxed);
            generation_.fetch_add(1, std::memory_order_release);
        }
        if (parts > 1) wake_.notify_all();
        task(0);
        if (parts > 1) {
            // the caller spins a little (the parts are equal), then sleeps
            for (int i = 0; pending_.load(std::memory_order_acquire) != 0; ++i) {
                if (i < 4096) {
                    pause();
                    continue;
                }
                std::unique_lock<std::mutex> lock(mutex_);
                done_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
                break;
            }
        }
        return true;
    }

private:
    static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#else
        std::this_thread::yield();
#endif
    }

    void worker(int index) {
        std::uint64_t seen = 0;
        for (;;) {
            // wait for a new generation: spin for ~50 us, then block
            std::uint64_t g = generation_.load(std::memory_order_acquire);
            if (g == seen) {
                const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
                for (int i = 0; g == seen; ++i) {
                    pause();
                    g = generation_.load(std::memory_order_acquire);
                    if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) break;
                }
                if (g == seen) {
                    std::unique_lock<std::mutex> lock(mutex_);
                    wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
                    g = generation_.load(std::memory_order_acquire);
                }
            }
            void* task;
            void (*invoke)(void*, int);
            int parts;
            bool stop;
            {
                // the generation and the job it describes are read together (a later job may
                // already have replaced the one that woke us: then this one runs, once)
                std::lock_guard<std::mutex> lock(mutex_);
                seen = generation_.load(std::memory_order_relaxed);
                stop = stop_;
                task = task_;
                invoke = invoke_;
                parts = parts_;
            }
            if (stop) return;
            if (index < parts) {
                invoke(task, index);
                if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                    std::lock_guard<std::mutex> lock(mutex_);  // pairs with the caller's wait
                    done_.notify_one();
                }
            }
        }
    }

    const int size_;
    std::vector<std::thread> workers_;
    std::mutex job_mutex_;  // one job at a time
    std::mutex mutex_;      // guards the job description below and the condition variables
    std::condition_variable wake_, done_;
    std::atomic<std::uint64_t> generation_{0};
    std::atomic<int> pending_{0};
    void* task_ = nullptr;
    void (*invoke_)(void*, int) = nullptr;
    int parts_ = 0;
    bool stop_ = false;
};

/// What a kernel may use to run: passed explicitly, never a global. with_threads(n) owns a
/// persistent pool of n - 1 workers, shared by copies of the context; a context may be shared
/// by concurrent calls (a call that finds the pool busy runs its work on its own thread). A
/// context whose `threads` is set by hand, without a pool, starts threads per call.
struct KernelContext {
    int threads = 1;
    std::shared_ptr<KernelThreadPool> pool;

    static KernelContext with_threads(int n) {
        BPUQ_CHECK(n >= 1 && n <= 1024, "kernels.threads", "thread count " + std::to_string(n) + " is outside [1, 1024]");
        KernelContext c;
        c.threads = n;
        if (n > 1) c.pool = std::make_shared<KernelThreadPool>(n);
        return c;
    }
};

/// Calls fn(begin, end) on disjoint contiguous ranges covering [0, count), one per thread
/// (the calling thread takes the first). Work items should be coarse (rows x channel blocks).
/// An exception thrown by any range is rethrown after all ranges finished. The split depends
/// only on ctx.threads and count, never on which thread runs a range.
template <class Fn>
inline void parallel_for(const KernelContext& ctx, std::int64_t count, Fn&& fn) {
    const std::int64_t parts = std::max<std::int64_t>(1, std::min<std::int64_t>(ctx.threads, count));
    if (parts == 1) {
        if (count > 0) fn(std::int64_t(0), count);
        return;
    }
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
    auto rethrow = [&] {
#if BPUQ_HAS_EXCEPTIONS
        for (auto& e : errors)
            if (e) std::rethrow_exception(e);
#endif
    };
    if (ctx.pool && parts <= ctx.pool->size()) {
        auto task = [&](int p) { range(p); };
        if (!ctx.pool->try_run(static_cast<int>(parts), task))
            for (std::int64_t p = 0; p < parts; ++p) range(p);  // pool busy: same ranges, this thread
        rethrow();
        return;
    }
    std::vector<std::thread> threads;
    threads.reserve(static_cast<std::size_t>(parts - 1));
    for (std::int64_t p = 1; p < parts; ++p) threads.emplace_back(range, p);
    range(0);
    for (auto& t : threads) t.join();
    rethrow();
}

BPUQ_NAMESPACE_END
