// Error metrics between a float reference x and a quantized result y (ALGORITHMS.md §5).
//
// Normalizations (stated once, used in logs and reports): cosine over the flattened tensor of one
// sample; L1 = mean |x - y|; L2 = sqrt(sum (x - y)^2) / n; MSE = mean (x - y)^2;
// MRE = sum |x - y| / (sum |x| + eps); SQNR = 20 log10(max(||x||, eps) / max(||x - y||, eps)) dB;
// Chebyshev = max |x - y|. Accumulation is in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"

BPUQ_NAMESPACE_BEGIN

enum class Metric { cosine_similarity, mse, mre, sqnr, chebyshev, l1, l2 };

inline const char* metric_name(Metric m) {
    switch (m) {
        case Metric::cosine_similarity: return "cosine-similarity";
        case Metric::mse: return "mse";
        case Metric::mre: return "mre";
        case Metric::sqnr: return "sqnr";
        case Metric::chebyshev: return "chebyshev";
        case Metric::l1: return "l1";
        case Metric::l2: return "l2";
    }
    return "unknown";
}

inline Metric parse_metric(const std::string& name) {
    for (Metric m : {Metric::cosine_similarity, Metric::mse, Metric::mre, Metric::sqnr, Metric::chebyshev, Metric::l1, Metric::l2})
        if (name == metric_name(m)) return m;
    BPUQ_THROW("metric.name", "unknown metric '" + name + "'; allowed: cosine-similarity, mse, mre, sqnr, chebyshev, l1, l2");
}

/// True when a larger value means a closer match (cosine, SQNR); false for the error metrics.
constexpr bool metric_higher_is_better(Metric m) noexcept { return m == Metric::cosine_similarity || m == Metric::sqnr; }

/// All metrics of one comparison, computed in one pass.
struct ErrorStats {
    double cosine = 1.0;
    double mse = 0.0;
    double mre = 0.0;
    double sqnr_db = 0.0;
    double chebyshev = 0.0;
    double l1 = 0.0;
    double l2 = 0.0;
    std::int64_t count = 0;

    double get(Metric m) const {
        switch (m) {
            case Metric::cosine_similarity: return cosine;
            case Metric::mse: return mse;
            case Metric::mre: return mre;
            case Metric::sqnr: return sqnr_db;
            case Metric::chebyshev: return chebyshev;
            case Metric::l1: return l1;
            case Metric::l2: return l2;
        }
        return 0.0;
    }
};

constexpr double kMetricEps = 1e-12;

/// Compare two spans of n floats (one sample). Both all-zero -> cosine 1.
inline ErrorStats compare(const float* x, const float* y, std::int64_t n) {
    ErrorStats s;
    s.count = n;
    if (n == 0) return s;
    double xy = 0, xx = 0, yy = 0, d2 = 0, d1 = 0, ax = 0, dmax = 0;
    for (std::int64_t i = 0; i < n; ++i) {
        const double a = x[i], b = y[i], d = a - b;
        xy += a * b;
        xx += a * a;
        yy += b * b;
        d2 += d * d;
        d1 += std::fabs(d);
        ax += std::fabs(a);
        dmax = std::max(dmax, std::fabs(d));
    }
    const double nx = std::sqrt(xx), ny = std::sqrt(yy);
    s.cosine = (xx == 0 && yy == 0) ? 1.0 : xy / (nx * ny + kMetricEps);
    s.mse = d2 / static_cast<double>(n);
    s.mre = d1 / (ax + kMetricEps);
    s.sqnr_db = 20.0 * std::log10(std::max(nx, kMetricEps) / std::max(std::sqrt(d2), kMetricEps));
    s.chebyshev = dmax;
    s.l1 = d1 / static_cast<double>(n);
    s.l2 = std::sqrt(d2) / static_cast<double>(n);
    return s;
}

/// Compare two float32 tensors of the same shape.
inline ErrorStats compare(const Tensor& x, const Tensor& y) {
    BPUQ_CHECK(x.shape() == y.shape(), "metric.shape",
               "cannot compare tensors of shapes " + shape_to_string(x.shape()) + " and " + shape_to_string(y.shape()));
    return compare(x.data<float>(), y.data<float>(), x.numel());
}

/// Running mean of per-sample statistics (cosine etc. averaged over samples; Chebyshev is the max).
class ErrorAccumulator {
public:
    void add(const ErrorStats& s) {
        ++samples_;
        sum_.cosine += s.cosine;
        sum_.mse += s.mse;
        sum_.mre += s.mre;
        sum_.sqnr_db += s.sqnr_db;
        sum_.l1 += s.l1;
        sum_.l2 += s.l2;
        sum_.chebyshev = std::max(sum_.chebyshev, s.chebyshev);
        sum_.count += s.count;
    }
    void merge(const ErrorAccumulator& o) {
        samples_ += o.samples_;
        sum_.cosine += o.sum_.cosine;
        sum_.mse += o.sum_.mse;
        sum_.mre += o.sum_.mre;
        sum_.sqnr_db += o.sum_.sqnr_db;
        sum_.l1 += o.sum_.l1;
        sum_.l2 += o.sum_.l2;
        sum_.chebyshev = std::max(sum_.chebyshev, o.sum_.chebyshev);
        sum_.count += o.sum_.count;
    }
    std::int64_t samples() const { return samples_; }
    ErrorStats mean() const {
        ErrorStats m = sum_;
        if (samples_ == 0) return ErrorStats{};
        const double k = static_cast<double>(samples_);
        m.cosine /= k;
        m.mse /= k;
        m.mre /= k;
        m.sqnr_db /= k;
        m.l1 /= k;
        m.l2 /= k;
        return m;
    }

private:
    ErrorStats sum_{0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0};
    std::int64_t samples_ = 0;
};

BPUQ_NAMESPACE_END
