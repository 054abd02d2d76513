// calibration_type: load sources: the calibration JSON (round trip, validation naming file and
// tensor) and QDQ models (their scales, zero points and weight integers, taken unchanged).
#include <doctest/doctest.h>

#include <bpuq/calib/calibration_file.hpp>
#include <bpuq/calib/collect.hpp>
#include <bpuq/calib/qdq_import.hpp>
#include <bpuq/emul/lower.hpp>
#include <bpuq/graph/passes.hpp>
#include <bpuq/onnx/import.hpp>

#include <filesystem>

#include "reference_samples.hpp"

using namespace bpuq;
namespace fs = std::filesystem;

namespace {

bool have(const std::string& rel) {
    if (bpuq_test::path_exists(bpuq_test::data_dir() + "/" + rel)) return true;
    MESSAGE("skipped: " << rel << " not under " << bpuq_test::data_dir() << " (set BPUQ_DATA_DIR)");
    return false;
}

graph::Graph optimized_model(const std::string& rel) {
    graph::Graph g = onnx_io::load_model(bpuq_test::data_dir() + "/" + rel);
    graph::infer_shapes(g);
    graph::optimize(g);
    return g;
}

}  // namespace

TEST_CASE("calibration file: what a run writes reads back to the same parameters; bad entries name file and tensor") {
    if (!have("cifar10/models/resnet8_fp32.onnx")) return;
    const graph::Graph g = optimized_model("cifar10/models/resnet8_fp32.onnx");
    config::ConvertConfig cfg;
    const calib::QuantPlan plan = calib::make_quant_plan(g, cfg);
    const std::string dir = bpuq_test::write_reference_samples("resnet8_fp32", fs::temp_directory_path() / "bpuq_calfile_r8");
    io::CalibrationSet data({{g.inputs[0], dir, "float32", {1, 3, 32, 32}}});
    graph::Executor exec{graph::Graph(g)};
    const calib::CalibrationStats stats = calib::collect_statistics(exec, data, plan);
    const auto acts = calib::choose_qparams(stats, plan, {CalibMethod::kl, 1.0, false, true});
    const nlohmann::json j = calib::calibration_file_json("kl, asymmetric", acts, {{"Conv_1", {0.5f, -0.25f}}});
    const std::string path = "run_calibration.json";

    // round trip through text: every scale and zero point is bit-identical
    const calib::CalibrationFile f = calib::parse_calibration_file(nlohmann::json::parse(j.dump(1)), path);
    CHECK(f.method == "kl, asymmetric");
    CHECK(f.biases.at("Conv_1") == std::vector<float>{0.5f, -0.25f});
    const auto back = calib::activations_from_file(f, plan);
    REQUIRE(back.size() == acts.size());
    for (const auto& kv : acts) {
        CHECK(back.at(kv.first).scale == kv.second.scale);
        CHECK(back.at(kv.first).zero_point == kv.second.zero_point);
        CHECK(back.at(kv.first).bits == kv.second.bits);
    }

    const std::string t = plan.calibrated.back();
    auto fails_with = [&](nlohmann::json bad, const std::vector<std::string>& words) {
        std::string what;
        try {
            calib::activations_from_file(calib::parse_calibration_file(bad, path), plan);
        } catch (const Error& e) {
            what = e.what();
        }
        REQUIRE_MESSAGE(!what.empty(), "no error for " << bad.dump().substr(0, 200));
        CHECK_MESSAGE(what.find(path) != std::string::npos, what);
        for (const auto& w : words) CHECK_MESSAGE(what.find(w) != std::string::npos, what);
    };
    nlohmann::json bad = j;
    bad["activations"]["no_such_tensor"] = j["activations"][t];
    fails_with(bad, {"'no_such_tensor'", "not an activation this model quantizes"});
    bad = j;
    bad["activations"][t]["bits"] = 16;
    bad["activations"][t]["zero_points"] = {0};
    fails_with(bad, {"'" + t + "'", "bits 16", "allowed: 8"});
    bad["activations"][t]["zero_points"] = {5};
    fails_with(bad, {"'" + t + "'", "int16 tensors are symmetric"});
    bad = j;
    bad["activations"][t]["bits"] = 4;
    fails_with(bad, {"'" + t + "'", "allowed: 8 or 16"});
    bad = j;
    bad["activations"].erase(t);
    fails_with(bad, {"1 tensor(s)", "'" + t + "'"});
    bad = j;
    bad["activations"][t]["scales"] = {-1.0};
    fails_with(bad, {"'" + t + "'", "positive finite"});
    bad = j;
    bad["activations"][t]["zero_points"] = {300};
    fails_with(bad, {"'" + t + "'", "outside the int8 range"});
    fails_with(nlohmann::json::array(), {"\"activations\""});
    CHECK_THROWS_WITH_AS(calib::read_calibration_file("/nonexistent/x_calibration.json"),
                         doctest::Contains("/nonexistent/x_calibration.json"), Error);
}

TEST_CASE("QDQ import: ResNet-8 int8 (TFLite) — activation scales and the weights' own int8 values") {
    if (!have("cifar10/models/resnet8_int8_qdq.onnx")) return;
    const std::string path = bpuq_test::data_dir() + "/cifar10/models/resnet8_int8_qdq.onnx";
    const graph::Graph src = onnx_io::load_model(path);
    graph::Graph g = src;
    const calib::QdqParameters q = calib::strip_qdq(g, path);
    CHECK_FALSE(calib::has_qdq(g));
    CHECK(q.quantize_nodes == 17);
    CHECK(q.activations.size() == 17);
    CHECK(q.weights.size() == 10);
    // every QuantizeLinear's scale and zero point reached a tensor of the stripped graph
    for (const auto& n : src.nodes) {
        if (n.op_type != "QuantizeLinear") continue;
        const float s = src.initializer(n.inputs[1])->data<float>()[0];
        const int z = src.initializer(n.inputs[2])->data<std::int8_t>()[0];
        bool found = false;
        for (const auto& kv : q.activations) found = found || (kv.second.scale[0] == s && kv.second.zero_point[0] == z && kv.second.bits == 8);
        CHECK_MESSAGE(found, n.inputs[0]);
    }
    // weights: quantizing the stripped float weights with the recorded parameters gives the stored int8
    int checked = 0;
    for (const auto& n : src.nodes) {
        if (n.op_type != "DequantizeLinear" || !src.is_initializer(n.inputs[0])) continue;
        const Tensor& stored = *src.initializer(n.inputs[0]);
        if (stored.dtype() != DType::int8) continue;
        const QParams& p = q.weights.at(n.outputs[0]);
        const Tensor back = quantize_tensor(*g.initializer(n.outputs[0]), p);
        REQUIRE(back.numel() == stored.numel());
        CHECK(std::equal(back.data<std::int8_t>(), back.data<std::int8_t>() + back.numel(), stored.data<std::int8_t>()));
        ++checked;
    }
    CHECK(checked == 10);
}

TEST_CASE("QDQ import: MobileNet V1 uint8 QAT — uint8 zero points become int8, asymmetric weights exact int16 in the program") {
    if (!have("imagenet/models/mobilenet_v1_0.25_128_qat_qdq.onnx")) return;
    const std::string path = bpuq_test::data_dir() + "/imagenet/models/mobilenet_v1_0.25_128_qat_qdq.onnx";
    const graph::Graph src = onnx_io::load_model(path);
    graph::Graph g = src;
    calib::QdqParameters q = calib::strip_qdq(g, path);
    // the input: uint8 scale 1/128, zero point 128 -> int8 zero point 0
    const QParams& in = q.activations.at(g.inputs[0]);
    CHECK(in.scale[0] == 1.0f / 128.0f);
    CHECK(in.zero_point[0] == 0);
    for (const auto& kv : q.activations) CHECK(kv.second.zero_point[0] >= -128);
    graph::infer_shapes(g);
    graph::optimize(g);
    config::ConvertConfig cfg;
    const calib::QuantPlan plan = calib::make_quant_plan(g, cfg);
    const calib::QdqActivationMatch m = calib::match_qdq_activations(q, plan, g);
    CHECK(m.missing.empty());  // featuremap input: the QDQ model quantizes every tensor the plan does
    std::map<std::string, QParams> weights = calib::quantize_weights(g, plan);
    CHECK(calib::use_qdq_weights(q, weights).empty());
    const emul::Program p = emul::lower_to_program(g, plan, m.activations, weights, Rounding::half_to_even);
    // the first conv's weights: stored uint8 q with zero point z -> program int16 q - z (OHWI)
    const graph::Node* dq = nullptr;
    for (const auto& n : src.nodes)
        if (n.op_type == "DequantizeLinear" && src.is_initializer(n.inputs[0]) && src.initializer(n.inputs[0])->dtype() == DType::uint8) {
            dq = &n;
            break;
        }
    REQUIRE(dq);
    const Tensor& wq = *src.initializer(dq->inputs[0]);
    const int z = src.initializer(dq->inputs[2])->data<std::uint8_t>()[0];
    CHECK(z != 128);  // a real zero point: int8 weights could not hold q - z
    const emul::ProgramTensor* pw = nullptr;
    for (const auto& t : p.tensors)
        if (t.name == dq->outputs[0] + "_quantized") pw = &t;
    REQUIRE(pw);
    CHECK(pw->dtype == DType::int16);
    CHECK(pw->quant.zero_points[0] == 0);
    CHECK(pw->quant.scales[0] == src.initializer(dq->inputs[1])->data<float>()[0]);
    const auto co = wq.dim(0), ci = wq.dim(1), kh = wq.dim(2), kw = wq.dim(3);
    std::vector<std::int16_t> v(pw->data.size() / 2);
    std::memcpy(v.data(), pw->data.data(), pw->data.size());
    int mismatches = 0;
    for (std::int64_t o = 0; o < co; ++o)
        for (std::int64_t i = 0; i < ci; ++i)
            for (std::int64_t y = 0; y < kh; ++y)
                for (std::int64_t x = 0; x < kw; ++x)
                    mismatches += v[std::size_t(((o * kh + y) * kw + x) * ci + i)] != int(wq.data<std::uint8_t>()[((o * ci + i) * kh + y) * kw + x]) - z;
    CHECK(mismatches == 0);
}
