// The calibrated (fake-quant) graph on ResNet-8: close to float, exactly float when every
// Calibration node is off, and the default search picks its best-scoring candidate.
#include <doctest/doctest.h>

#include <bpuq/calib/qdq.hpp>
#include <bpuq/calib/search.hpp>
#include <bpuq/io/npy.hpp>
#include <bpuq/io/random_samples.hpp>
#include <bpuq/onnx/import.hpp>

#include <filesystem>

#include "reference_samples.hpp"

using namespace bpuq;
namespace fs = std::filesystem;


TEST_CASE("ResNet-8 fake quantization and the default search") {
    if (!bpuq_test::path_exists(bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx")) {
        MESSAGE("skipped: no ResNet-8 under " << bpuq_test::data_dir());
        return;
    }
    const graph::Graph g = onnx_io::load_model(bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx");
    graph::Executor fexec{graph::Graph(g)};
    const calib::QuantPlan plan = calib::make_quant_plan(fexec.graph(), config::ConvertConfig{});
    const std::string dir = bpuq_test::write_reference_samples("resnet8_fp32", fs::temp_directory_path() / "bpuq_fq_r8");
    io::CalibrationSet data({{fexec.graph().inputs[0], dir, "float32", {1, 3, 32, 32}}});
    calib::CollectOptions opt;
    opt.stats.per_channel = true;
    const auto stats = calib::collect_statistics(fexec, data, plan, opt);
    const auto reference = calib::float_outputs(fexec, data, data.size(), 2);

    const auto weights = calib::quantize_weights(fexec.graph(), plan);
    CHECK(weights.size() >= 9);  // every Conv and the Gemm
    for (const auto& kv : weights) {
        CHECK(kv.second.narrow);
        CHECK(kv.second.axis >= 0);
    }
    const calib::CalibChoice mx{CalibMethod::max, 1.0, false, false};
    graph::Graph calibrated = calib::make_calibrated_graph(fexec.graph(), plan, calib::choose_qparams(stats, plan, mx), weights, "max");
    int cal_nodes = 0;
    for (const auto& n : calibrated.nodes) cal_nodes += n.op_type == "Calibration";
    int int32_outputs = 0;  // BPU Conv/Gemm/MatMul writing a float model output dequantize their int32 sum
    for (const auto& n : fexec.graph().nodes)
        for (const auto& o : n.outputs)
            if (plan.nodes.at(n.name).on_bpu && calib::dequantizes_accumulator(n.op_type) && plan.tensors.count(o) &&
                plan.tensors.at(o).float_output)
                ++int32_outputs;
    CHECK(cal_nodes == static_cast<int>(weights.size() + plan.calibrated.size()) - int32_outputs);
    {
        graph::Executor q{graph::Graph(calibrated)};
        const auto s = calib::score_graph(q, data, reference, 2);
        MESSAGE("ResNet-8 int8 max fake-quant cosine " << s[0].mean.cosine);
        CHECK(s[0].mean.cosine > 0.99);
        CHECK(s[0].mean.cosine < 1.0);
    }
    calib::set_calibration_enabled(calibrated, {}, false, /*all=*/true);
    {
        graph::Executor off{graph::Graph(calibrated)};
        const auto s = calib::score_graph(off, data, reference, 1);
        CHECK(s[0].mean.chebyshev == 0.0);  // identical to float
    }
    const auto cands = calib::default_search_candidates();
    CHECK(cands.size() == 12);
    const auto r = calib::search_choices(fexec.graph(), plan, stats, data, reference, cands, 2);
    REQUIRE(r.scores.size() == 12);
    for (const auto& s : r.scores) CHECK(s.cosine <= r.scores[r.best].cosine);
    MESSAGE("default search picked " << r.scores[r.best].choice.describe() << " with cosine " << r.scores[r.best].cosine);
    fs::remove_all(dir);
}

TEST_CASE("QDQ export of an opset-8 model (mnist-8) is raised to opset 13 when no op changes meaning, else to 10") {
    if (!bpuq_test::path_exists(bpuq_test::data_dir() + "/mnist/mnist-8.onnx")) {
        MESSAGE("skipped: no mnist-8 under " << bpuq_test::data_dir());
        return;
    }
    graph::Graph g = onnx_io::load_model(bpuq_test::data_dir() + "/mnist/mnist-8.onnx");
    REQUIRE(g.opset < 10);
    graph::Executor fexec{graph::Graph(g)};
    const calib::QuantPlan plan = calib::make_quant_plan(fexec.graph(), config::ConvertConfig{});
    const io::CalibrationSet data = io::random_calibration_set({{g.inputs[0], "", "float32", {1, 1, 28, 28}}}, {true}, 2);
    CHECK(data.is_in_memory());
    const auto stats = calib::collect_statistics(fexec, data, plan);
    const auto acts = calib::choose_qparams(stats, plan, {CalibMethod::max, 1.0, false, false});
    const auto weights = calib::quantize_weights(fexec.graph(), plan);
    CHECK(calib::qdq_unsupported_reason(plan, acts, &fexec.graph()).empty());
    const graph::Graph q = calib::make_qdq_graph(fexec.graph(), plan, acts, weights);
    CHECK(q.opset == 13);  // per-axis int8 weights: ONNX Runtime's int8 kernels can read them
    int qnodes = 0, int8_weights = 0;
    for (const auto& n : q.nodes) qnodes += n.op_type == "QuantizeLinear";
    for (const auto& kv : q.initializers) int8_weights += kv.second.dtype() == DType::int8 && kv.second.rank() == 4;
    CHECK(qnodes > 0);
    CHECK(int8_weights > 0);
    // an op whose meaning changed by opset 10 blocks the raise, naming the node
    graph::Graph h = fexec.graph();
    h.nodes[0].op_type = "Upsample";
    CHECK(calib::opset10_blocker(h).find(h.nodes[0].name) != std::string::npos);
    // one whose form changes by 13 (Clip's bounds became inputs at 11) keeps the export at 10
    h.nodes[0].op_type = "Clip";
    CHECK(calib::opset10_blocker(h).empty());
    CHECK(calib::opset_upgrade_blocker(h, 13).find(h.nodes[0].name) != std::string::npos);
    CHECK(calib::qdq_export_opset(h) == 10);
    // Softmax from opset 13 normalizes one axis: the same as before only when the dims after it are 1
    graph::Graph sm;
    sm.opset = 7;
    sm.values["x"] = graph::Value{"x", DType::float32, true, Shape{1, 10, 1, 1}, true, {}};
    graph::Node soft;
    soft.name = "soft";
    soft.op_type = "Softmax";
    soft.inputs = {"x"};
    soft.outputs = {"y"};
    sm.nodes = {soft};
    CHECK(calib::qdq_export_opset(sm) == 13);
    sm.values["x"].shape = {1, 10, 2, 1};
    CHECK(calib::qdq_export_opset(sm) == 10);
}
