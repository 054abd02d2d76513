// Weight quantization: per-channel symmetric scales from max |w|, and weights that already lie on
// a grid (exported from a quantized model) keep it exactly; random weights never look like a grid.
#include <doctest/doctest.h>

#include <bpuq/calib/weights.hpp>
#include <bpuq/onnx/import.hpp>
#include <bpuq/quant/quantize.hpp>

#include <cmath>
#include <random>

#include "reference_samples.hpp"

using namespace bpuq;

namespace {

/// Channels of a [C, n] tensor whose int8 round trip reproduces every weight to 1e-5 of the max.
std::size_t exact_channels(const Tensor& w, const QParams& p) {
    const Tensor back = dequantize_tensor(quantize_tensor(w, p), p);
    const std::int64_t C = w.dim(0), n = w.numel() / C;
    std::size_t exact = 0;
    for (std::int64_t c = 0; c < C; ++c) {
        double worst = 0, top = 0;
        for (std::int64_t i = 0; i < n; ++i) {
            worst = std::max(worst, std::fabs(double(back.data<float>()[c * n + i]) - w.data<float>()[c * n + i]));
            top = std::max(top, std::fabs(double(w.data<float>()[c * n + i])));
        }
        exact += worst <= 1e-5 * top;
    }
    return exact;
}

}  // namespace

TEST_CASE("weights: random weights get max-based scales, weights on a grid keep the grid") {
    std::mt19937 rng(7);
    const std::int64_t C = 16, n = 75;
    // random normal weights: no grid, scale = max |w_c| / 127, most channels re-rounded
    Tensor r(DType::float32, {C, n});
    std::normal_distribution<float> normal(0.0f, 0.05f);
    for (std::int64_t i = 0; i < r.numel(); ++i) r.data<float>()[i] = normal(rng);
    const QParams pr = calib::weight_qparams(r, 0);
    for (std::int64_t c = 0; c < C; ++c) {
        CHECK(calib::weight_grid_step(r.data<float>() + c * n, n, 127) == 0.0f);
        float mx = 0;
        for (std::int64_t i = 0; i < n; ++i) mx = std::max(mx, std::fabs(r.data<float>()[c * n + i]));
        CHECK(pr.scale[std::size_t(c)] == doctest::Approx(mx / 127.0f).epsilon(1e-6));
    }
    CHECK(exact_channels(r, pr) == 0);

    // weights on a per-channel grid (step d_c, multiples within +-120): represented exactly
    Tensor g(DType::float32, {C, n});
    std::uniform_int_distribution<int> k(-120, 120);
    for (std::int64_t c = 0; c < C; ++c) {
        const double d = 0.00123 * double(c + 1) / 3.0;
        for (std::int64_t i = 0; i < n; ++i) g.data<float>()[c * n + i] = float(d * (i < 2 ? 120 - i : k(rng)));  // one gap of 1 step
    }
    const QParams pg = calib::weight_qparams(g, 0);
    for (std::int64_t c = 0; c < C; ++c) CHECK(pg.scale[std::size_t(c)] == doctest::Approx(0.00123 * double(c + 1) / 3.0).epsilon(1e-6));
    CHECK(exact_channels(g, pg) == std::size_t(C));

    // a grid wider than int8 (multiples up to 200) cannot be kept: max-based scale
    Tensor wide = g;
    for (std::int64_t c = 0; c < C; ++c) wide.data<float>()[c * n + 5] = float(0.00123 * double(c + 1) / 3.0 * 200);
    const QParams pw = calib::weight_qparams(wide, 0);
    for (std::int64_t c = 0; c < C; ++c) CHECK(pw.scale[std::size_t(c)] == doctest::Approx(0.00123 * double(c + 1) / 3.0 * 200 / 127).epsilon(1e-6));
}

TEST_CASE("weights: MobileNet V2's weights keep the grid of its uint8 origin, ResNet-8's have none") {
    for (const auto& [rel, expect_grid] : std::vector<std::pair<std::string, bool>>{{"imagenet/models/mobilenet_v2_1.0_224_fp32.onnx", true},
                                                                                    {"cifar10/models/resnet8_fp32.onnx", false}}) {
        if (!bpuq_test::path_exists(bpuq_test::data_dir() + "/" + rel)) {
            MESSAGE("skipped: " << rel << " not under " << bpuq_test::data_dir());
            continue;
        }
        const graph::Graph m = onnx_io::load_model(bpuq_test::data_dir() + "/" + rel);
        std::size_t channels = 0, exact = 0;
        for (const auto& node : m.nodes) {
            if (node.op_type != "Conv" || !m.is_initializer(node.inputs[1])) continue;
            const Tensor& w = *m.initializer(node.inputs[1]);
            const Tensor flat = w.reshaped({w.dim(0), w.numel() / w.dim(0)});
            const QParams p = calib::weight_qparams(flat, 0);
            channels += std::size_t(w.dim(0));
            exact += exact_channels(flat, p);
        }
        MESSAGE(rel << ": " << exact << " of " << channels << " conv channels exact in int8");
        if (expect_grid) CHECK(double(exact) > 0.95 * double(channels));
        else CHECK(double(exact) < 0.01 * double(channels));
    }
}
