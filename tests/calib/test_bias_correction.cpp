// Empirical bias correction on a real model: every BPU Conv is corrected, the per-channel mean
// error of the quantized layers' outputs against the float model shrinks, bad biases are refused.
#include <doctest/doctest.h>

#include <bpuq/calib/bias_correction.hpp>
#include <bpuq/calib/weights.hpp>
#include <bpuq/graph/passes.hpp>
#include <bpuq/onnx/import.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "reference_samples.hpp"

using namespace bpuq;
namespace fs = std::filesystem;

namespace {

/// Mean over the given tensors and their channels of |mean over samples and space of (float - quantized)|.
double mean_channel_bias(const graph::Graph& fl, const graph::Graph& cal, const std::vector<std::string>& tensors,
                         const io::CalibrationSet& data) {
    graph::Graph a = fl, b = cal;
    a.outputs = tensors;
    b.outputs = tensors;
    const graph::Executor fe{std::move(a)}, ce{std::move(b)};
    graph::ExecContext ctx(2);
    std::vector<std::vector<double>> diff(tensors.size());
    double count = 0;
    for (std::size_t s = 0; s < data.size(); ++s) {
        const auto x = data.load_sample(s);
        const auto yf = fe.run(x, ctx), yq = ce.run(x, ctx);
        for (std::size_t t = 0; t < tensors.size(); ++t) {
            const std::int64_t C = yf[t].dim(1), inner = yf[t].numel() / C;
            diff[t].resize(std::size_t(C), 0.0);
            for (std::int64_t c = 0; c < C; ++c) {
                double d = 0;
                for (std::int64_t i = 0; i < inner; ++i) d += double(yf[t].data<float>()[c * inner + i]) - yq[t].data<float>()[c * inner + i];
                diff[t][std::size_t(c)] += d / double(inner);
            }
        }
        count += 1;
    }
    double sum = 0, n = 0;
    for (std::size_t t = 0; t < tensors.size(); ++t) {
        for (double d : diff[t]) {
            sum += std::fabs(d / count);
            n += 1;
        }
    }
    return sum / n;
}

}  // namespace

TEST_CASE("bias correction on MobileNet V1 0.25: every conv corrected, per-channel mean error of the layers reduced") {
    const std::string rel = "imagenet/models/mobilenet_v1_0.25_128_fp32.onnx";
    if (!bpuq_test::path_exists(bpuq_test::data_dir() + "/" + rel)) {
        MESSAGE("skipped: " << rel << " not under " << bpuq_test::data_dir() << " (set BPUQ_DATA_DIR)");
        return;
    }
    graph::Graph g = onnx_io::load_model(bpuq_test::data_dir() + "/" + rel);
    graph::infer_shapes(g);
    graph::optimize(g);
    config::ConvertConfig cfg;
    const calib::QuantPlan plan = calib::make_quant_plan(g, cfg);
    const std::string dir =
        bpuq_test::write_reference_samples("mobilenet_v1_0.25_128_fp32", fs::temp_directory_path() / "bpuq_bias_mv1");
    io::CalibrationSet data({{g.inputs[0], dir, "float32", {1, 3, 128, 128}}});
    graph::Executor exec{graph::Graph(g)};
    const calib::CalibrationStats stats = calib::collect_statistics(exec, data, plan);
    const auto acts = calib::choose_qparams(stats, plan, {CalibMethod::max, 1.0, false, false});
    const auto weights = calib::quantize_weights(g, plan);

    calib::BiasCorrectionOptions opt;
    opt.threads = 2;
    const calib::BiasCorrectionResult bc = calib::correct_biases(g, plan, acts, weights, data, opt);
    std::vector<std::string> conv_outputs;
    for (const auto& n : g.nodes)
        if (n.op_type == "Conv") conv_outputs.push_back(n.outputs[0]);
    CHECK(bc.samples == 8);
    CHECK(bc.layers.size() == conv_outputs.size());
    CHECK(bc.levels == conv_outputs.size());  // a chain: one layer per level
    REQUIRE(bc.largest() < bc.layers.size());
    MESSAGE("largest shift " << bc.layers[bc.largest()].max_abs_shift << " at " << bc.layers[bc.largest()].node);
    CHECK(bc.layers[bc.largest()].max_abs_shift > 0.0);

    graph::Graph corrected = g;
    calib::apply_biases(corrected, bc.biases, "test");
    const double before = mean_channel_bias(g, calib::make_calibrated_graph(g, plan, acts, weights, "max"), conv_outputs, data);
    const double after = mean_channel_bias(g, calib::make_calibrated_graph(corrected, plan, acts, weights, "max"), conv_outputs, data);
    MESSAGE("mean |per-channel mean error| of the conv outputs: " << before << " before, " << after << " after bias correction");
    CHECK(after < 0.8 * before);

    // the definition, checked with plain full forward passes of the final corrected model: each
    // layer's shift is the float mean minus the quantized mean of its linear part, with every
    // layer above it already corrected (the staged runner must have run each node once, in time)
    {
        const graph::Graph cal = calib::make_calibrated_graph(corrected, plan, acts, weights, "max");
        std::vector<std::size_t> layers;
        std::vector<std::string> float_in, quant_in;
        std::vector<Tensor> float_w, quant_w;
        for (std::size_t k = 0; k < g.nodes.size(); ++k) {
            const graph::Node& n = g.nodes[k];
            if (n.op_type != "Conv") continue;
            layers.push_back(k);
            float_in.push_back(n.inputs[0]);
            quant_in.push_back(cal.nodes[std::size_t(cal.find_node(n.name))].inputs[0]);
            const Tensor& w = *g.initializer(n.inputs[1]);
            float_w.push_back(w);
            quant_w.push_back(dequantize_tensor(quantize_tensor(w, weights.at(n.inputs[1])), weights.at(n.inputs[1])));
        }
        const auto fm = calib::detail::channel_means(g, g, layers, float_in, float_w, data, data.size(), 2);
        const auto qm = calib::detail::channel_means(g, cal, layers, quant_in, quant_w, data, data.size(), 2);
        std::size_t checked = 0;
        for (std::size_t l = 0; l < layers.size(); ++l) {
            const graph::Node& n = g.nodes[layers[l]];
            const Tensor* b = n.has_input(2) ? g.initializer(n.inputs[2]) : nullptr;
            const std::vector<float>& nb = bc.biases.at(n.name);
            for (std::size_t c = 0; c < nb.size(); ++c) {
                const double shift = double(nb[c]) - (b ? double(b->data<float>()[c]) : 0.0);
                CHECK(shift == doctest::Approx(fm[l][c] - qm[l][c]).epsilon(1e-3).scale(1e-3));
                ++checked;
            }
        }
        CHECK(checked > 1000);
    }

    // in the calibrated model the corrections are Calibration nodes of kind "bias": switched on,
    // the model is the one built from the corrected graph; switched off, it is the float model
    {
        const graph::Graph with_nodes = calib::make_calibrated_graph(g, plan, acts, weights, "max", Rounding::half_away_from_zero, bc.biases);
        std::size_t bias_nodes = 0;
        for (const auto& n : with_nodes.nodes) bias_nodes += n.op_type == "Calibration" && n.attr_string("kind", "") == "bias";
        CHECK(bias_nodes == bc.biases.size());
        graph::Graph off = with_nodes;
        calib::set_calibration_enabled(off, {}, false, /*all=*/true);
        const graph::Executor on_exec{graph::Graph(with_nodes)}, off_exec{std::move(off)}, float_exec{graph::Graph(g)},
            applied_exec{calib::make_calibrated_graph(corrected, plan, acts, weights, "max")};
        graph::ExecContext ctx(1);
        for (std::size_t s = 0; s < 2; ++s) {
            const auto x = data.load_sample(s);
            const Tensor a = on_exec.run(x, ctx)[0], b = applied_exec.run(x, ctx)[0];
            const Tensor c = off_exec.run(x, ctx)[0], d = float_exec.run(x, ctx)[0];
            REQUIRE(a.numel() == b.numel());
            CHECK(std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0);
            CHECK(std::memcmp(c.raw(), d.raw(), c.nbytes()) == 0);
            CHECK(std::memcmp(a.raw(), d.raw(), a.nbytes()) != 0);
        }
    }

    // the same samples give the same biases with one thread (sums merge exactly enough)
    opt.threads = 1;
    const calib::BiasCorrectionResult one = calib::correct_biases(g, plan, acts, weights, data, opt);
    for (const auto& kv : bc.biases)
        for (std::size_t c = 0; c < kv.second.size(); ++c) CHECK(one.biases.at(kv.first)[c] == doctest::Approx(kv.second[c]).epsilon(1e-4));

    // bad biases name the node and what is wrong
    graph::Graph h = g;
    CHECK_THROWS_WITH_AS(calib::apply_biases(h, {{"nope", {1.0f}}}, "file x.json"), doctest::Contains("'nope'"), Error);
    CHECK_THROWS_WITH_AS(calib::apply_biases(h, {{bc.layers[0].node, {1.0f}}}, "file x.json"),
                         doctest::Contains("output channels"), Error);
}
