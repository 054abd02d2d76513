// ExecContext: the explicit execution context (thread count and its worker pool); no globals.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <tuple>
#include <thread>
#include <vector>

#include "../core/config.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {

/// A fixed set of worker threads that run one parallel_for at a time. Owned by an
/// ExecContext; the calling thread takes part in the work.
class ThreadPool {
public:
    explicit ThreadPool(int threads) {
        for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work_loop(); });
    }
    ~ThreadPool() {
        {
            std::lock_guard<std::mutex> lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        for (auto& w : workers_) w.join();
    }
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return static_cast<int>(workers_.size()) + 1; }

    /// Calls fn(task) for task in [0, tasks), spread over the pool; returns when all are done
    /// and no worker still holds this job (so the next run cannot see stale state).
    void run(std::int64_t tasks, const std::function<void(std::int64_t)>& fn) {
        if (workers_.empty() || tasks <= 1) {
            for (std::int64_t t = 0; t < tasks; ++t) fn(t);
            return;
        }
        std::unique_lock<std::mutex> lock(mu_);
        job_ = &fn;
        total_ = tasks;
        next_.store(0);
        done_ = 0;
        ++generation_;
        lock.unlock();
        cv_.notify_all();
        drain(fn, tasks);
        lock.lock();
        done_cv_.wait(lock, [&] { return done_ == total_ && active_ == 0; });
        job_ = nullptr;
    }

private:
    void drain(const std::function<void(std::int64_t)>& job, std::int64_t total) {
        std::int64_t finished = 0;
        for (std::int64_t t; (t = next_.fetch_add(1)) < total; ++finished) job(t);
        std::lock_guard<std::mutex> lock(mu_);
        done_ += finished;
        if (done_ == total_ && active_ == 0) done_cv_.notify_all();
    }
    void work_loop() {
        std::uint64_t seen = 0;
        for (;;) {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return stop_ || (generation_ != seen && job_ != nullptr); });
            if (stop_) return;
            seen = generation_;
            const auto* job = job_;
            const std::int64_t total = total_;
            ++active_;
            lock.unlock();
            drain(*job, total);
            lock.lock();
            --active_;
            if (done_ == total_ && active_ == 0) done_cv_.notify_all();
        }
    }

    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable cv_, done_cv_;
    const std::function<void(std::int64_t)>* job_ = nullptr;  // guarded by mu_
    std::atomic<std::int64_t> next_{0};
    std::int64_t total_ = 0, done_ = 0, active_ = 0;  // guarded by mu_
    std::uint64_t generation_ = 0;
    bool stop_ = false;
};

/// Packed copies of constant weights (the layout a kernel wants, e.g. GEMM panels), built on
/// first use and kept for the owner's lifetime. An Executor owns one and registers its
/// graph's initializers, which cannot change while it exists, so a packed copy never goes
/// stale; data that is not a registered constant is never cached. Safe for concurrent runs.
class PackedWeightCache {
public:
    /// Marks the buffer starting at `data` as constant for this cache's lifetime.
    void add_constant(const void* data) {
        if (data) constants_.insert(data);
    }
    bool is_constant(const void* data) const { return constants_.count(data) != 0; }

    /// The packed copy identified by (source, layout...), written by pack(dst) on first use.
    const float* find_or_pack(const void* source, std::int64_t lda, std::int64_t rows, std::int64_t cols,
                              std::int64_t layout, std::size_t floats, const std::function<void(float*)>& pack) {
        std::lock_guard<std::mutex> lock(mu_);
        auto& slot = packed_[std::make_tuple(source, lda, rows, cols, layout)];
        if (!slot) {
            slot = std::make_unique<std::vector<float>>(floats);
            pack(slot->data());
        }
        return slot->data();
    }

    /// The cache of the run in progress on this thread (nullptr outside an Executor run).
    static PackedWeightCache*& current() {
        thread_local PackedWeightCache* cache = nullptr;
        return cache;
    }
    /// Makes `cache` current on this thread for the scope's lifetime.
    class Scope {
    public:
        explicit Scope(PackedWeightCache* cache) : previous_(current()) { current() = cache; }
        ~Scope() { current() = previous_; }
        Scope(const Scope&) = delete;
        Scope& operator=(const Scope&) = delete;

    private:
        PackedWeightCache* previous_;
    };

private:
    std::set<const void*> constants_;  // written only before any run
    std::mutex mu_;
    std::map<std::tuple<const void*, std::int64_t, std::int64_t, std::int64_t, std::int64_t>,
             std::unique_ptr<std::vector<float>>>
        packed_;
};

/// What an executor needs besides the graph: how many threads it may use. Pass one
/// explicitly to everything that runs kernels; it is not thread-safe to share between
/// concurrent runs.
class ExecContext {
public:
    explicit ExecContext(int threads = 1) : pool_(std::make_unique<ThreadPool>(std::max(1, threads))) {}
    int threads() const { return pool_->size(); }

    /// Splits [0, n) into about threads() chunks of at least `grain` and runs fn(begin, end).
    void parallel_for(std::int64_t n, std::int64_t grain,
                      const std::function<void(std::int64_t, std::int64_t)>& fn) const {
        if (n <= 0) return;
        const std::int64_t max_chunks = std::max<std::int64_t>(1, n / std::max<std::int64_t>(1, grain));
        const std::int64_t chunks = std::min<std::int64_t>(threads(), max_chunks);
        if (chunks <= 1) {
            fn(0, n);
            return;
        }
        const std::int64_t step = (n + chunks - 1) / chunks;
        pool_->run(chunks, [&](std::int64_t c) {
            const std::int64_t b = c * step, e = std::min(n, b + step);
            if (b < e) fn(b, e);
        });
    }

private:
    std::unique_ptr<ThreadPool> pool_;
};

}  // namespace graph

BPUQ_NAMESPACE_END
