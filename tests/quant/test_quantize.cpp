// Scalar quantize / dequantize / requantize of values and tensors, and the typed Quantizer.
#include <doctest/doctest.h>

#include <bpuq/quant.hpp>

#include <cmath>
#include <limits>
#include <random>

#include "test_support.hpp"

using namespace bpuq;

TEST_CASE("quantize_value saturates, rounds by policy, and maps NaN to the zero point") {
    CHECK(quantize_value(1000.0f, 1.0f, 0, -128, 127) == 127);
    CHECK(quantize_value(-1000.0f, 1.0f, 0, -128, 127) == -128);
    CHECK(quantize_value(std::numeric_limits<float>::infinity(), 0.1f, 3, -128, 127) == 127);
    CHECK(quantize_value(-std::numeric_limits<float>::infinity(), 0.1f, 3, -128, 127) == -128);
    CHECK(quantize_value(std::nanf(""), 0.1f, 3, -128, 127) == 3);
    CHECK(quantize_value(2.5f, 1.0f, 0, -128, 127) == 3);
    CHECK(quantize_value<RoundHalfToEven>(2.5f, 1.0f, 0, -128, 127) == 2);
    CHECK(quantize_value(-0.5f, 1.0f, 10, -128, 127) == 9);
    CHECK(quantize_value(1e30f, 1e-30f, 100, -128, 127) == 127);  // x/s overflows to inf
    CHECK(quantize_value(-40000.0f, 1.0f, 0, -32768, 32767) == -32768);
    CHECK(dequantize_value(-128, 0.5f, 2) == -65.0f);
}

TEST_CASE("fake quantization error is at most half a step inside the range") {
    auto& g = bpuq_test::rng();
    std::normal_distribution<float> d(0.0f, 2.0f);
    for (bool sym : {true, false})
        for (int bits : {8, 16}) {
            if (bits == 16 && !sym) continue;
            const QParams p = qparams_from_range(-6.0f, 5.0f, bits, sym);
            for (int i = 0; i < 10000; ++i) {
                const float x = std::max(-5.9f, std::min(4.9f, d(g)));
                const float y = dequantize_value(quantize_value(x, p.scale[0], p.zero_point[0], p.qmin(), p.qmax()),
                                                 p.scale[0], p.zero_point[0]);
                REQUIRE(std::fabs(x - y) <= p.scale[0] * 0.5f + std::fabs(x) * 1e-6f);  // + float rounding
            }
        }
}

TEST_CASE("per-channel tensor quantization equals per-tensor quantization of each channel") {
    auto& g = bpuq_test::rng();
    std::normal_distribution<float> d(0.0f, 1.0f);
    const Shape shape{2, 3, 4, 5};
    std::vector<float> values(static_cast<std::size_t>(shape_numel(shape)));
    for (auto& v : values) v = d(g);
    const Tensor x = Tensor::from_vector(shape, values);
    const QParams pc = qparams_from_ranges({-1.0f, -2.0f, -3.0f}, {1.0f, 0.5f, 3.0f}, 1, 8, false);
    const Tensor q = quantize_tensor(x, pc);
    const Tensor back = dequantize_tensor(q, pc);
    for (std::int64_t n = 0; n < 2; ++n)
        for (std::int64_t c = 0; c < 3; ++c)
            for (std::int64_t i = 0; i < 20; ++i) {
                const std::int64_t idx = (n * 3 + c) * 20 + i;
                const auto sc = static_cast<std::size_t>(c);
                const std::int32_t expect =
                    quantize_value(values[static_cast<std::size_t>(idx)], pc.scale[sc], pc.zero_point[sc], -128, 127);
                REQUIRE(q.data<std::int8_t>()[idx] == expect);
                REQUIRE(back.data<float>()[idx] == dequantize_value(expect, pc.scale[sc], pc.zero_point[sc]));
            }
    // wrong channel count or storage type are errors
    CHECK_THROWS_WITH_AS(quantize_tensor(x, qparams_from_ranges({-1.0f}, {1.0f}, 1)), doctest::Contains("has 3 channels"),
                         bpuq::Error);
    Tensor wrong(DType::int16, shape);
    CHECK_THROWS_WITH_AS(quantize_tensor(x, wrong, pc), doctest::Contains("need an int8 tensor"), bpuq::Error);
}

TEST_CASE("requantize_tensor matches the real-valued rescale within one step") {
    auto& g = bpuq_test::rng();
    std::uniform_int_distribution<int> d(-128, 127);
    const QParams from = qparams_from_range(-3.0f, 3.0f, 8, false);
    const QParams to = qparams_from_range(-1.0f, 2.0f, 8, true);
    std::vector<std::int8_t> qv(1000);
    for (auto& v : qv) v = static_cast<std::int8_t>(d(g));
    const Tensor q = Tensor::from_vector<std::int8_t>({1000}, qv);
    const Tensor r = requantize_tensor(q, from, to);
    for (std::size_t i = 0; i < qv.size(); ++i) {
        const float real = dequantize_value(qv[i], from.scale[0], from.zero_point[0]);
        const int direct = quantize_value(real, to.scale[0], to.zero_point[0], to.qmin(), to.qmax());
        REQUIRE(std::abs(r.data<std::int8_t>()[i] - direct) <= 1);
    }
    // int8 -> int16 widening keeps every value exactly when the scale ratio is a power of two
    QParams wide = qparams_from_threshold(1.0f, 16);
    QParams narrow8 = wide;
    narrow8.bits = 8;
    narrow8.scale[0] = wide.scale[0] * 256.0f;
    const Tensor w = requantize_tensor(q, narrow8, wide);
    for (std::size_t i = 0; i < qv.size(); ++i) REQUIRE(w.data<std::int16_t>()[i] == qv[i] * 256);
}

TEST_CASE("Quantizer<Spec> checks its parameters against the Spec") {
    using Q8 = Quantizer<QuantSpec<8, Symmetric, PerTensor, RoundHalfToEven>>;
    auto q = Q8::from_range(-1.0f, 1.0f);
    CHECK(q.quantize(1.0f) == 127);
    CHECK(q.quantize(0.5f / 127.0f) == 0);  // tie to even
    CHECK(q.fake_quantize(0.3f) == doctest::Approx(0.3f).epsilon(0.02));
    using QC = Quantizer<QuantSpec<8, Symmetric, PerChannel<0>>>;
    auto qc = QC::from_ranges({-1.0f, -2.0f}, {1.0f, 2.0f}, /*narrow=*/true);
    CHECK(qc.quantize(-5.0f, 1) == -127);
    CHECK(qc.dequantize(127, 1) == doctest::Approx(2.0f));
    CHECK_THROWS_WITH_AS(Q8(qparams_from_range(-1.0f, 1.0f, 8, false)), doctest::Contains("symmetric"), bpuq::Error);
    CHECK_THROWS_WITH_AS(Q8(qparams_from_range(-1.0f, 1.0f, 16, true)), doctest::Contains("16-bit"), bpuq::Error);
    CHECK_THROWS_AS(QC(qparams_from_range(-1.0f, 1.0f)), bpuq::Error);
}

TEST_CASE("apply_fold: broadcast factors multiply or divide every weight exactly as w op f in double") {
    std::mt19937 rng(21);
    std::uniform_real_distribution<float> u(-2.0f, 2.0f), pos(0.01f, 3.0f);
    const Shape w_shape{5, 3, 2, 3};
    std::vector<float> wv(5 * 3 * 2 * 3);
    for (auto& v : wv) v = u(rng);
    const Tensor w = Tensor::from_vector<float>(w_shape, wv);
    // one varying axis (input channels of OIHW, output channels), none, and two (the general loop)
    for (const Shape& fs : {Shape{1, 3, 1, 1}, Shape{5, 1, 1, 1}, Shape{1, 1, 1, 3}, Shape{1, 1, 1, 1}, Shape{5, 3, 1, 1}}) {
        CAPTURE(shape_to_string(fs));
        std::int64_t fn = 1;
        for (auto d : fs) fn *= d;
        std::vector<float> fv(static_cast<std::size_t>(fn));
        for (auto& v : fv) v = pos(rng);
        const Tensor f = Tensor::from_vector<float>(fs, fv);
        for (const bool divide : {false, true}) {
            const Tensor got = apply_fold(w, f, divide);
            REQUIRE(got.shape() == w_shape);
            for (std::int64_t o = 0; o < 5; ++o)
                for (std::int64_t c = 0; c < 3; ++c)
                    for (std::int64_t k = 0; k < 6; ++k) {
                        const std::int64_t i = (o * 3 + c) * 6 + k;
                        const std::int64_t fi = (fs[0] == 1 ? 0 : o) * (fs[1] * fs[3]) + (fs[1] == 1 ? 0 : c) * fs[3] +
                                                (fs[3] == 1 ? 0 : k % 3);
                        const double a = wv[std::size_t(i)], b = fv[std::size_t(fi)];
                        REQUIRE(got.data<float>()[i] == static_cast<float>(divide ? a / b : a * b));
                    }
        }
    }
    CHECK_THROWS_WITH_AS(apply_fold(w, Tensor::from_vector<float>({1, 2, 1, 1}, {1.0f, 2.0f}), false),
                         doctest::Contains("do not broadcast"), Error);
}
