// Error metrics against hand-computed values and their defining properties.
#include <doctest/doctest.h>

#include <bpuq/debug/metrics.hpp>

#include <cmath>

using namespace bpuq;

TEST_CASE("hand-computed values") {
    const float x[4] = {1, 2, 3, 4};
    const float y[4] = {1, 2, 3, 5};
    const ErrorStats s = compare(x, y, 4);
    const double cos = (1 + 4 + 9 + 20) / (std::sqrt(30.0) * std::sqrt(39.0));
    CHECK(s.cosine == doctest::Approx(cos).epsilon(1e-12));
    CHECK(s.mse == doctest::Approx(0.25));
    CHECK(s.mre == doctest::Approx(0.1));
    CHECK(s.l1 == doctest::Approx(0.25));
    CHECK(s.l2 == doctest::Approx(0.25));
    CHECK(s.chebyshev == 1.0);
    CHECK(s.sqnr_db == doctest::Approx(20 * std::log10(std::sqrt(30.0))));
    CHECK(s.get(Metric::mre) == s.mre);
}

TEST_CASE("identical, zero and opposite tensors") {
    const float x[3] = {0.5f, -1.0f, 2.0f};
    const float neg[3] = {-0.5f, 1.0f, -2.0f};
    const float zero[3] = {0, 0, 0};
    CHECK(compare(x, x, 3).cosine == doctest::Approx(1.0));
    CHECK(compare(x, x, 3).sqnr_db > 200.0);  // capped by eps, never inf
    CHECK(compare(x, neg, 3).cosine == doctest::Approx(-1.0));
    CHECK(compare(zero, zero, 3).cosine == 1.0);
    CHECK(compare(x, zero, 3).cosine == 0.0);
    CHECK(std::isfinite(compare(zero, x, 3).sqnr_db));
}

TEST_CASE("names, ordering and accumulation over samples") {
    CHECK(parse_metric("sqnr") == Metric::sqnr);
    CHECK_THROWS_WITH_AS(parse_metric("cosine"), doctest::Contains("allowed: cosine-similarity"), bpuq::Error);
    CHECK(metric_higher_is_better(Metric::cosine_similarity));
    CHECK_FALSE(metric_higher_is_better(Metric::mse));
    ErrorAccumulator a, b, all;
    const float x[2] = {1, 0}, y1[2] = {1, 0}, y2[2] = {0, 1};
    a.add(compare(x, y1, 2));
    b.add(compare(x, y2, 2));
    all.add(compare(x, y1, 2));
    all.add(compare(x, y2, 2));
    a.merge(b);
    CHECK(a.samples() == 2);
    CHECK(a.mean().cosine == doctest::Approx(0.5));
    CHECK(a.mean().cosine == all.mean().cosine);
    CHECK(a.mean().chebyshev == 1.0);
    const Tensor t1 = Tensor::from_vector<float>({2}, {1, 2}), t2 = Tensor::from_vector<float>({1, 2}, {1, 2});
    CHECK_THROWS_WITH_AS(compare(t1, t2), doctest::Contains("[2] and [1x2]"), bpuq::Error);
}
