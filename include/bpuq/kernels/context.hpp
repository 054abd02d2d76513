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
/// pool. A job is a number of parts; the calling thread and the workers claim parts from a
/// shared counter, so the caller never idles while a worker has not been scheduled yet (on a
/// loaded machine it simply runs more parts itself). Workers wait for a job briefly spinning,
/// then sleeping on a condition variable, so a sequence of small kernels does not pay a thread
/// start per call.
class KernelThreadPool {
public:
    /// `threads` counts the calling thread: threads - 1 workers are started.
    explicit KernelThreadPool(int threads) : size_(std::max(1, threads)) {
        workers_.reserve(static_cast<std::size_t>(size_ - 1));
        for (int i = 1; i < size_; ++i) workers_.emplace_back([this] { worker(); });
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

    /// Runs task(p) exactly once for every p in [0, parts), on the calling thread and the
    /// workers, and returns when all parts finished. Returns false without running anything
    /// when the pool is already running a job (a concurrent or nested call): the caller then
    /// runs the work itself. `task` must not throw (parallel_for catches inside it).
    template <class Task>
    bool try_run(int parts, Task& task) {
        std::unique_lock<std::mutex> job(job_mutex_, std::try_to_lock);
        if (!job.owns_lock()) return false;
        if (parts <= 0) return true;
        std::uint32_t gen;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            invoke_ = [](void* t, int p) { (*static_cast<Task*>(t))(p); };
            task_ = &task;
            parts_ = parts;
            done_.store(0, std::memory_order_relaxed);
            gen = static_cast<std::uint32_t>(generation_.fetch_add(1, std::memory_order_acq_rel) + 1);
            claim_.store(std::uint64_t(gen) << 32, std::memory_order_release);
        }
        wake_.notify_all();
        run_parts(gen, parts, &task, invoke_);
        for (int i = 0; done_.load(std::memory_order_acquire) != parts; ++i) {
            if (i < 2048) {
                pause();
                continue;
            }
            std::unique_lock<std::mutex> lock(mutex_);
            finished_.wait(lock, [&] { return done_.load(std::memory_order_acquire) == parts; });
            break;
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

    /// Claims and runs parts of job `gen` until none is left (a claim of an older job fails).
    void run_parts(std::uint32_t gen, int parts, void* task, void (*invoke)(void*, int)) {
        for (;;) {
            std::uint64_t c = claim_.load(std::memory_order_acquire);
            if (static_cast<std::uint32_t>(c >> 32) != gen || static_cast<int>(c & 0xffffffffu) >= parts) return;
            if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) continue;
            invoke(task, static_cast<int>(c & 0xffffffffu));
            if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == parts) {
                std::lock_guard<std::mutex> lock(mutex_);  // pairs with the caller's wait
                finished_.notify_all();
            }
        }
    }

    void worker() {
        std::uint64_t seen = 0;  // the generation at construction: a job or a stop published before
                                 // this thread started is seen at once
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
                    wake_.wait(lock, [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
                }
            }
            void* task;
            void (*invoke)(void*, int);
            int parts;
            {
                // the generation and the job it describes are read together; parts are claimed
                // only while the claim counter still carries this generation
                std::lock_guard<std::mutex> lock(mutex_);
                seen = generation_.load(std::memory_order_relaxed);
                if (stop_) return;
                task = task_;
                invoke = invoke_;
                parts = parts_;
            }
            run_parts(static_cast<std::uint32_t>(seen), parts, task, invoke);
        }
    }

    const int size_;
    std::vector<std::thread> workers_;
    std::mutex job_mutex_;  // one job at a time
    std::mutex mutex_;      // guards the job description below and the condition variables
    std::condition_variable wake_, finished_;
    std::atomic<std::uint64_t> generation_{0};
    std::atomic<std::uint64_t> claim_{0};  // (generation << 32) | next unclaimed part
    std::atomic<int> done_{0};
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

/// Calls fn(begin, end) on disjoint contiguous ranges covering [0, count): with a pool, up to
/// four ranges per thread claimed by whichever thread is free (the caller included); without
/// one, one range per thread (the calling thread takes the first). Work items should be coarse (rows x channel blocks).
/// An exception thrown by any range is rethrown after all ranges finished. Which thread runs a
/// range never changes a result (every output element is computed by one range, the same way).
template <class Fn>
inline void parallel_for(const KernelContext& ctx, std::int64_t count, Fn&& fn) {
    // with a pool, four ranges per thread, claimed dynamically (a thread the OS delays leaves its
    // ranges to the others); without one, one range per started thread
    const std::int64_t per_thread = ctx.pool ? 4 : 1;
    const std::int64_t parts = ctx.threads <= 1 ? 1 : std::max<std::int64_t>(1, std::min<std::int64_t>(ctx.threads * per_thread, count));
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
    if (ctx.pool) {
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
