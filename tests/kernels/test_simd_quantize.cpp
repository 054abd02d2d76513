// SIMD quantize / dequantize / requantize spans and tensors equal the scalar reference bit for bit.
#include <doctest/doctest.h>

#include <bpuq/kernels.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "test_support.hpp"

using namespace bpuq;

namespace {

// Every architecture path this TU can run: the scalar fallback, SSE4.1, AVX2 and the default.
#define BPUQ_TEST_ARCHS bpuq::simd::scalar, xsimd::sse4_1, xsimd::avx2, bpuq::simd::avx512_vnni, bpuq::simd::default_arch

/// Floats of every magnitude: random bit patterns (normals, denormals, +-0, +-Inf, NaNs), exact
/// ties (k + 0.5) * scale, values near the clamp bounds, and ordinary values.
std::vector<float> adversarial_floats(std::size_t n, float scale, std::int32_t zp) {
    auto& g = bpuq_test::rng();
    std::uniform_int_distribution<std::uint32_t> bits;
    std::uniform_int_distribution<int> kind(0, 7), k(-40000, 40000);
    std::normal_distribution<float> normal(0.0f, 100.0f);
    std::vector<float> v(n);
    for (auto& x : v) {
        switch (kind(g)) {
            case 0:
            case 1: {
                const std::uint32_t b = bits(g);
                std::memcpy(&x, &b, 4);
                break;
            }
            case 2: x = (static_cast<float>(k(g)) + 0.5f) * scale; break;  // a tie (when exact)
            case 3: x = static_cast<float>(k(g) % 300 - zp) * scale; break;
            case 4: x = std::ldexp(normal(g), -140); break;                // denormal territory
            case 5: {
                const float specials[] = {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                                          std::numeric_limits<float>::quiet_NaN(), -0.0f, 0.0f,
                                          std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                                          std::numeric_limits<float>::denorm_min(), 8388608.5f, 16777217.0f};
                x = specials[static_cast<std::size_t>(k(g) + 40000) % 10];
                break;
            }
            default: x = normal(g) * scale * 0.5f; break;
        }
    }
    return v;
}

template <class Q>
struct Storage;
template <>
struct Storage<std::int8_t> {
    static constexpr int bits = 8;
};
template <>
struct Storage<std::int16_t> {
    static constexpr int bits = 16;
};

template <class Arch, class Round, class Q>
void check_quantize_span(std::size_t n, float scale, std::int32_t zp, std::int32_t qmin, std::int32_t qmax) {
    const std::vector<float> x = adversarial_floats(n, scale, zp);
    std::vector<Q> want(n + 1, Q(99)), got(n + 1, Q(99));  // the extra element catches overruns
    reference::quantize_span<Round>(x.data(), want.data(), static_cast<std::int64_t>(n), scale, zp, qmin, qmax);
    simd::quantize_span<Arch, Round>(x.data(), got.data(), static_cast<std::int64_t>(n), scale, zp, qmin, qmax);
    for (std::size_t i = 0; i <= n; ++i) {
        if (want[i] != got[i]) {
            INFO("arch " << std::string(simd::level_name<Arch>()) << ", " << std::string(Round::name) << ", n " << n << ", i " << i << ", x "
                         << x[i < n ? i : 0] << ", scale " << scale << ", zp " << zp);
            REQUIRE(int(got[i]) == int(want[i]));
        }
    }
}

const float kScales[] = {1.0f, 0.5f, 0.1f, 1.0f / 255.0f, 3.7e-5f, 0.0173f, 250.0f, 1e-20f, 7.3e12f};

}  // namespace

TEST_CASE_TEMPLATE("simd quantize_span equals the reference on adversarial floats", Arch, BPUQ_TEST_ARCHS) {
    auto& g = bpuq_test::rng();
    std::uniform_int_distribution<int> zp8(-128, 127), len(0, 300);
    for (float scale : kScales) {
        for (int rep = 0; rep < 6; ++rep) {
            const auto n = static_cast<std::size_t>(rep == 0 ? 4099 : len(g));
            const std::int32_t zp = rep % 2 ? zp8(g) : 0;
            check_quantize_span<Arch, RoundHalfAwayFromZero, std::int8_t>(n, scale, zp, -128, 127);
            check_quantize_span<Arch, RoundHalfToEven, std::int8_t>(n, scale, zp, -128, 127);
            check_quantize_span<Arch, RoundHalfAwayFromZero, std::int8_t>(n, scale, 0, -127, 127);  // narrow
            check_quantize_span<Arch, RoundHalfToEven, std::int8_t>(n, scale, zp, zp, 127);       // ReLU floor
            check_quantize_span<Arch, RoundHalfAwayFromZero, std::int16_t>(n, scale, 0, -32768, 32767);
            check_quantize_span<Arch, RoundHalfToEven, std::int16_t>(n, scale, 0, -32768, 32767);
            check_quantize_span<Arch, RoundHalfToEven, std::int16_t>(n, scale, zp * 100, -32767, 32767);
        }
    }
}

TEST_CASE_TEMPLATE("simd quantize_span rounds exact ties by the policy", Arch, BPUQ_TEST_ARCHS) {
    // scale 0.5 makes every x = k/4 an exact quarter step: ties are exact, both signs.
    std::vector<float> x;
    for (int k = -600; k <= 600; ++k) x.push_back(static_cast<float>(k) * 0.25f);
    const auto n = static_cast<std::int64_t>(x.size());
    std::vector<std::int8_t> want(x.size()), got(x.size());
    reference::quantize_span<RoundHalfToEven>(x.data(), want.data(), n, 0.5f, 3, -128, 127);
    simd::quantize_span<Arch, RoundHalfToEven>(x.data(), got.data(), n, 0.5f, 3, -128, 127);
    CHECK(want == got);
    reference::quantize_span<RoundHalfAwayFromZero>(x.data(), want.data(), n, 0.5f, 3, -128, 127);
    simd::quantize_span<Arch, RoundHalfAwayFromZero>(x.data(), got.data(), n, 0.5f, 3, -128, 127);
    CHECK(want == got);
    // spot values so that a wrong reference cannot hide behind a matching wrong kernel
    const float ties[32] = {0.25f, 0.75f, -0.25f, -0.75f, 1.25f, -1.25f};
    std::int8_t q[32];
    simd::quantize_span<Arch, RoundHalfToEven>(ties, q, 32, 0.5f, 0, -128, 127);
    CHECK(q[0] == 0);
    CHECK(q[1] == 2);
    CHECK(q[2] == 0);
    CHECK(q[3] == -2);
    CHECK(q[4] == 2);
    CHECK(q[5] == -2);
    simd::quantize_span<Arch, RoundHalfAwayFromZero>(ties, q, 32, 0.5f, 0, -128, 127);
    CHECK(q[0] == 1);
    CHECK(q[2] == -1);
    CHECK(q[4] == 3);
    CHECK(q[5] == -3);
}

TEST_CASE_TEMPLATE("simd quantize_span maps NaN to the zero point and saturates infinities", Arch, BPUQ_TEST_ARCHS) {
    std::vector<float> x(64, std::numeric_limits<float>::quiet_NaN());
    for (std::size_t i = 0; i < x.size(); i += 3) x[i] = std::numeric_limits<float>::infinity();
    for (std::size_t i = 1; i < x.size(); i += 5) x[i] = -std::numeric_limits<float>::infinity();
    std::vector<std::int8_t> q(64);
    simd::quantize_span<Arch>(x.data(), q.data(), 64, 0.1f, -7, -128, 127);
    for (std::size_t i = 0; i < x.size(); ++i) {
        const int want = std::isnan(x[i]) ? -7 : (x[i] > 0 ? 127 : -128);
        CHECK(int(q[i]) == want);
    }
}

TEST_CASE_TEMPLATE("simd dequantize_span equals the reference for every int8 and many int16 values", Arch,
                   BPUQ_TEST_ARCHS) {
    std::vector<std::int8_t> q8;
    for (int v = -128; v <= 127; ++v) q8.push_back(static_cast<std::int8_t>(v));
    std::vector<std::int16_t> q16;
    for (int v = -32768; v <= 32767; v += 7) q16.push_back(static_cast<std::int16_t>(v));
    q16.push_back(32767);
    for (float scale : kScales) {
        for (std::int32_t zp : {0, -128, 127, 45}) {
            for (std::size_t n : {q8.size(), std::size_t(255), std::size_t(17), std::size_t(3)}) {
                std::vector<float> want(n), got(n);
                reference::dequantize_span(q8.data(), want.data(), static_cast<std::int64_t>(n), scale, zp);
                simd::dequantize_span<Arch>(q8.data(), got.data(), static_cast<std::int64_t>(n), scale, zp);
                REQUIRE(std::memcmp(want.data(), got.data(), n * sizeof(float)) == 0);
            }
            std::vector<float> want(q16.size()), got(q16.size());
            const auto n = static_cast<std::int64_t>(q16.size());
            reference::dequantize_span(q16.data(), want.data(), n, scale, zp * 200);
            simd::dequantize_span<Arch>(q16.data(), got.data(), n, scale, zp * 200);
            REQUIRE(std::memcmp(want.data(), got.data(), q16.size() * sizeof(float)) == 0);
        }
    }
}

namespace {

/// Multipliers over the whole accepted range, plus the extremes of m0 and of the shift.
std::vector<QuantizedMultiplier> test_multipliers() {
    std::vector<QuantizedMultiplier> out;
    auto& g = bpuq_test::rng();
    std::uniform_real_distribution<double> log2m(-33.0, 29.9);
    for (int i = 0; i < 40; ++i) out.push_back(quantize_multiplier(std::exp2(log2m(g))));
    for (double m : {1.0, 0.5, 0.25, 0.0039215686, 1.0 / 3.0, 0.999999, 2.0, 1000.0, 1e-9}) out.push_back(quantize_multiplier(m));
    QuantizedMultiplier q;
    q.multiplier = std::numeric_limits<std::int32_t>::max();
    q.shift = 30;  // total right shift 1: the largest multiplier
    out.push_back(q);
    q.shift = -31;  // total right shift 62
    out.push_back(q);
    q.multiplier = 1 << 30;
    q.shift = 0;
    out.push_back(q);
    out.push_back(QuantizedMultiplier{});  // M = 0
    return out;
}

template <class Arch, class Round, class QIn, class QOut>
void check_requantize(const std::vector<QIn>& in, std::int32_t zp_in, const QuantizedMultiplier& qm, std::int32_t zp_out,
                      std::int32_t qmin, std::int32_t qmax) {
    const auto n = static_cast<std::int64_t>(in.size());
    std::vector<QOut> want(in.size() + 1, QOut(5)), got(in.size() + 1, QOut(5));
    reference::requantize_span<Round>(in.data(), want.data(), n, zp_in, qm, zp_out, qmin, qmax);
    simd::requantize_span<Arch, Round>(in.data(), got.data(), n, zp_in, qm, zp_out, qmin, qmax);
    for (std::size_t i = 0; i <= in.size(); ++i) {
        if (want[i] != got[i]) {
            INFO("arch " << std::string(simd::level_name<Arch>()) << ", " << std::string(Round::name) << ", q " << int(in[i < in.size() ? i : 0])
                         << ", zp_in " << zp_in << ", m0 " << qm.multiplier << ", shift " << qm.shift << ", zp_out "
                         << zp_out << ", range [" << qmin << ", " << qmax << "]");
            REQUIRE(int(got[i]) == int(want[i]));
        }
    }
}

}  // namespace

TEST_CASE_TEMPLATE("simd requantize_span equals the reference (int8/int16 both ways, both roundings)", Arch,
                   BPUQ_TEST_ARCHS) {
    std::vector<std::int8_t> all8;
    for (int r = 0; r < 2; ++r)
        for (int v = -128; v <= 127; ++v) all8.push_back(static_cast<std::int8_t>(r ? 127 - (v + 128) : v));
    all8.push_back(-128);  // odd length: a scalar tail
    std::vector<std::int16_t> some16;
    auto& g = bpuq_test::rng();
    std::uniform_int_distribution<int> d16(-32768, 32767);
    for (int i = 0; i < 999; ++i) some16.push_back(static_cast<std::int16_t>(d16(g)));
    for (int v : {-32768, 32767, 0, 1, -1, -32767}) some16.push_back(static_cast<std::int16_t>(v));
    for (const QuantizedMultiplier& qm : test_multipliers()) {
        for (std::int32_t zp_in : {0, -128, 127, 17}) {
            check_requantize<Arch, RoundHalfAwayFromZero, std::int8_t, std::int8_t>(all8, zp_in, qm, 5, -128, 127);
            check_requantize<Arch, RoundHalfToEven, std::int8_t, std::int8_t>(all8, zp_in, qm, -128, -128, 127);
            check_requantize<Arch, RoundHalfAwayFromZero, std::int8_t, std::int16_t>(all8, zp_in, qm, 0, -32768, 32767);
            check_requantize<Arch, RoundHalfToEven, std::int16_t, std::int8_t>(some16, zp_in * 100, qm, 3, 3, 100);
            check_requantize<Arch, RoundHalfAwayFromZero, std::int16_t, std::int16_t>(some16, 0, qm, 0, -32767, 32767);
            check_requantize<Arch, RoundHalfToEven, std::int16_t, std::int16_t>(some16, zp_in, qm, 0, -32768, 32767);
        }
    }
}

TEST_CASE_TEMPLATE("simd tensor wrappers equal the scalar tensor functions, per tensor and per channel", Arch,
                   BPUQ_TEST_ARCHS) {
    auto& g = bpuq_test::rng();
    std::normal_distribution<float> d(0.0f, 3.0f);
    const Shape shape{2, 5, 7, 9};  // inner runs of 63: odd tails everywhere
    Tensor x(DType::float32, shape);
    for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = d(g);
    std::vector<QParams> params;
    params.push_back(qparams_from_range(-5.0f, 7.0f, 8, false));
    params.push_back(qparams_from_range(-5.0f, 7.0f, 16, true));
    QParams pc = qparams_from_range(-1.0f, 1.0f, 8, false);
    pc.axis = 1;
    pc.scale = {0.01f, 0.02f, 0.05f, 0.1f, 0.003f};
    pc.zero_point = {-3, 0, 9, -128, 127};
    params.push_back(pc);
    QParams pc16 = qparams_from_range(-1.0f, 1.0f, 16, true);
    pc16.axis = 3;
    pc16.scale.assign(9, 1e-3f);
    pc16.zero_point.assign(9, 0);
    for (std::size_t i = 0; i < 9; ++i) pc16.scale[i] *= static_cast<float>(i + 1);
    params.push_back(pc16);
    for (const QParams& p : params) {
        const Tensor want = quantize_tensor<RoundHalfToEven>(x, p);
        const Tensor got = simd::quantize_tensor<Arch, RoundHalfToEven>(x, p);
        REQUIRE(std::memcmp(want.raw(), got.raw(), want.nbytes()) == 0);
        const Tensor fw = dequantize_tensor(want, p);
        const Tensor fg = simd::dequantize_tensor<Arch>(got, p);
        REQUIRE(std::memcmp(fw.raw(), fg.raw(), fw.nbytes()) == 0);
        const QParams to = qparams_from_range(-4.0f, 9.0f, 8, false);
        const Tensor rw = requantize_tensor(want, p, to);
        const Tensor rg = simd::requantize_tensor<Arch>(got, p, to);
        REQUIRE(std::memcmp(rw.raw(), rg.raw(), rw.nbytes()) == 0);
    }
    QParams bad = params[0];
    bad.bits = 16;
    Tensor out8(DType::int8, shape);
    CHECK_THROWS_WITH_AS(simd::quantize_tensor<Arch>(x, out8, bad), doctest::Contains("[bpuq.tensor.dtype]"), Error);
}

TEST_CASE("the default architecture selects the widest path the compiler flags enable") {
#if BPUQ_SIMD_HAS_AVX512_VNNI
    CHECK(simd::simd_level<simd::default_arch> == simd::Level::avx512_vnni);
    CHECK(simd::vector_level<simd::default_arch> == simd::Level::avx512_vnni);
#elif BPUQ_SIMD_HAS_AVX2
    // xsimd's AVX-512 types do not derive from avx2; they must still select the AVX2 kernels
    CHECK(static_cast<int>(simd::simd_level<simd::default_arch>) >= static_cast<int>(simd::Level::avx2));
#endif
#if BPUQ_SIMD_HAS_AVX2
    CHECK(simd::simd_level<xsimd::fma3<xsimd::avx2>> == simd::Level::avx2);
#endif
    CHECK(simd::simd_level<simd::scalar> == simd::Level::scalar);
#if BPUQ_SIMD_HAS_SSE4_1
    CHECK(simd::simd_level<xsimd::sse4_2> == simd::Level::sse4_1);
#endif
}

TEST_CASE("dispatch picks the widest compiled path the CPU supports and gives the reference's bits") {
    const simd::Level active = dispatch::active_level();
    CHECK(static_cast<int>(active) <= static_cast<int>(dispatch::compiled_level()));
    CHECK(dispatch::cpu_supports(active));
    CHECK(dispatch::cpu_supports(simd::Level::scalar));
    MESSAGE("compiled " << std::string(dispatch::level_name(dispatch::compiled_level())) << ", active "
                        << std::string(dispatch::level_name(active)));
    const std::vector<float> x = adversarial_floats(1001, 0.05f, 3);
    std::vector<std::int8_t> want(x.size()), got(x.size());
    reference::quantize_span<RoundHalfToEven>(x.data(), want.data(), 1001, 0.05f, 3, -128, 127);
    dispatch::quantize_span<RoundHalfToEven>(x.data(), got.data(), 1001, 0.05f, 3, -128, 127);
    CHECK(want == got);

    Conv2dGeometry g;
    g.in_h = 6;
    g.in_w = 11;
    g.in_c = 13;
    g.out_c = 40;
    g.kernel_h = g.kernel_w = 3;
    g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = 1;
    std::vector<std::int8_t> in(static_cast<std::size_t>(g.input_size())), w(static_cast<std::size_t>(g.weight_size()));
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<std::int8_t>((i * 37) % 256 - 128);
    for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<std::int8_t>((i * 91) % 255 - 127);
    const QuantizedMultiplier m = quantize_multiplier(0.0021);
    Requantization rq;
    rq.multipliers = &m;
    rq.per_channel = false;
    rq.zero_point = 4;
    std::vector<std::int8_t> y_ref(static_cast<std::size_t>(g.output_size())), y(y_ref.size());
    reference::conv2d(g, in.data(), -7, w.data(), rq, y_ref.data());
    dispatch::conv2d(KernelContext::with_threads(2), g, in.data(), -7, simd::PackedConvWeights::pack(g, w.data()), rq, y.data());
    CHECK(y == y_ref);
}
