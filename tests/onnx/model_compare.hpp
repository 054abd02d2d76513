// Comparison of executor outputs with reference outputs (cosine similarity, max abs error).
#pragma once

#include <bpuq/core/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace bpuq_test {

struct Agreement {
    double cosine = 1, max_abs = 0, range = 0;
};

inline Agreement compare(const float* a, const float* b, std::int64_t n) {
    double dot = 0, na = 0, nb = 0, mx = 0, lo = 1e300, hi = -1e300;
    for (std::int64_t i = 0; i < n; ++i) {
        dot += double(a[i]) * b[i];
        na += double(a[i]) * a[i];
        nb += double(b[i]) * b[i];
        mx = std::max(mx, std::fabs(double(a[i]) - b[i]));
        lo = std::min(lo, double(b[i]));
        hi = std::max(hi, double(b[i]));
    }
    Agreement r;
    r.cosine = (na == 0 && nb == 0) ? 1.0 : dot / std::sqrt(na * nb);
    r.max_abs = mx;
    r.range = hi - lo;
    return r;
}

}  // namespace bpuq_test
