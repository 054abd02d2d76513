// int16 nodes (int16 inputs and int16 weights, biases kept inside int32) and calibration_type mix
// on ResNet-8, end to end through convert().
#include <doctest/doctest.h>

#include <bpuq/flow/convert.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "reference_samples.hpp"

using namespace bpuq;
namespace fs = std::filesystem;

namespace {

struct Run {
    fs::path dir;
    flow::ConvertResult result;
    std::string log;
    ~Run() { fs::remove_all(dir); }
};

std::unique_ptr<Run> convert_resnet8(const std::string& name, const std::string& type, const std::string& optimization) {
    auto r = std::make_unique<Run>();
    r->dir = fs::temp_directory_path() / ("bpuq_int16_mix_" + name);
    fs::remove_all(r->dir);
    const std::string cal = bpuq_test::write_reference_samples("resnet8_fp32", r->dir / "cal");
    nlohmann::json j;
    j["model_parameters"] = {{"onnx_model", bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx"},
                             {"output_model_file_prefix", "r8"},
                             {"working_dir", (r->dir / "out").string()}};
    j["input_parameters"] = {{"input_type_train", "rgb"}, {"input_type_rt", "rgb"}};
    j["calibration_parameters"] = {{"cal_data_dir", cal}, {"calibration_type", type}};
    if (!optimization.empty()) j["calibration_parameters"]["optimization"] = optimization;
    std::ostringstream console;
    r->result = flow::convert(config::parse_convert_config(j, name + ".yaml"), console, {2, 8});
    r->log = console.str();
    return r;
}


double output_cosine(const Run& r) { return r.result.report.at("outputs").at(0).at("cosine_similarity").get<double>(); }

bool have_resnet8() {
    if (bpuq_test::path_exists(bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx")) return true;
    MESSAGE("skipped: ResNet-8 not under " << bpuq_test::data_dir());
    return false;
}

}  // namespace

TEST_CASE("int16 nodes get int16 weights whose biases stay inside int32, and beat int8") {
    if (!have_resnet8()) return;
    const auto int8 = convert_resnet8("i8", "max", "");
    const auto int16 = convert_resnet8("i16", "max", "set_all_nodes_int16");
    const emul::Program p = emul::load_program_file(int16->result.artifacts.at("integer_program"));
    std::size_t weights16 = 0, convs = 0;
    for (const auto& n : p.nodes) {
        if (n.op != "conv2d" && n.op != "gemm") continue;
        ++convs;
        const auto& w = p.tensors[std::size_t(n.inputs[1])];
        const auto& b = p.tensors[std::size_t(n.inputs[2])];
        weights16 += w.dtype == DType::int16;
        REQUIRE(b.dtype == DType::int32);
        for (std::int64_t i = 0; i < b.numel(); ++i) {
            std::int32_t v;
            std::memcpy(&v, b.data.data() + 4 * i, 4);
            CHECK(v > -(1 << 30));  // the weight scale was raised where the bias needed it: never saturated
            CHECK(v < (1 << 30));
        }
    }
    // every conv reads int16 weights; the last Gemm writes the float output from its int32
    // accumulator and keeps int8 weights (16 x 16 bit products would not fit)
    CHECK(convs >= 9);
    CHECK(weights16 + 1 >= convs);
    // the int16-weight convolutions run the SIMD kernels (vpdpwssd), bit-identical to the reference
    emul::ProgramExecutor simd_exec(p, {1, true});
    emul::ProgramExecutor ref_exec(p, {1, false});
    for (int s = 0; s < 4; ++s) {
        const std::vector<Tensor> in{io::read_npy((int16->dir / "cal" / ("s" + std::to_string(s) + ".npy")).string())};
        const auto a = simd_exec.run(in);
        const auto b = ref_exec.run(in);
        REQUIRE(a.size() == b.size());
        for (std::size_t k = 0; k < a.size(); ++k) {
            REQUIRE(a[k].nbytes() == b[k].nbytes());
            CHECK(std::memcmp(a[k].raw(), b[k].raw(), a[k].nbytes()) == 0);
        }
    }
    MESSAGE("ResNet-8 output cosine: int8 " << output_cosine(*int8) << ", int16 nodes " << output_cosine(*int16));
    CHECK(output_cosine(*int16) > output_cosine(*int8));
    CHECK(output_cosine(*int16) > 0.9999);
}

TEST_CASE("calibration_type mix: model-wise best, then the sensitive activations re-chosen, with a merge table") {
    if (!have_resnet8()) return;
    const auto mix = convert_resnet8("mix", "mix", "");
    CHECK(mix->log.find("mix: max, max-percentile 0.99995 and kl") != std::string::npos);
    CHECK(mix->log.find("Select ") != std::string::npos);
    const std::string method = mix->result.report.at("calibration").at("method").get<std::string>();
    CHECK(method.rfind("mix (model-wise ", 0) == 0);
    CHECK(mix->result.report.at("calibration").at("search").size() == 3);
    if (mix->log.find("Activation (mix)") != std::string::npos)
        CHECK(mix->log.find("sensitive activations re-chosen") != std::string::npos);
    // mix is at least as good as its model-wise base on the calibration samples
    double best = 0;
    for (const auto& s : mix->result.report.at("calibration").at("search")) best = std::max(best, s.at("cosine").get<double>());
    MESSAGE("mix: " << method << ", output cosine " << output_cosine(*mix) << " (model-wise best fake-quant " << best << ")");
    CHECK(output_cosine(*mix) > 0.99);
}

TEST_CASE("mix_calibration: each re-chosen activation takes the method that hurts the output least") {
    if (!have_resnet8()) return;
    const fs::path dir = fs::temp_directory_path() / "bpuq_mix_direct";
    const std::string cal = bpuq_test::write_reference_samples("resnet8_fp32", dir / "cal");
    nlohmann::json j;
    j["model_parameters"] = {{"onnx_model", bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx"},
                             {"output_model_file_prefix", "r8"},
                             {"working_dir", (dir / "out").string()}};
    j["input_parameters"] = {{"input_type_train", "featuremap"}, {"input_type_rt", "featuremap"}};
    j["calibration_parameters"] = {{"cal_data_dir", cal}, {"calibration_type", "mix"}};
    const config::ConvertConfig cfg = config::parse_convert_config(j, "mix.yaml");
    graph::Graph g = onnx_io::load_model(cfg.onnx_model);
    graph::infer_shapes(g);
    graph::optimize(g);
    const calib::QuantPlan plan = calib::make_quant_plan(g, cfg);
    const graph::Value* in = g.find_value(g.inputs[0]);
    Shape s = in->shape;
    for (auto& d : s) d = d < 0 ? 1 : d;
    const io::CalibrationSet data({{g.inputs[0], cal, "float32", s}});
    const graph::Executor exec{graph::Graph(g)};
    const calib::CalibrationStats stats = calib::collect_statistics(exec, data, plan, {});
    const auto reference = calib::float_outputs(exec, data, data.size(), 2);
    flow::MixOptions opt;
    opt.topk = 3;  // whatever their cosine: the three most sensitive activations
    opt.samples = 8;
    opt.threads = 2;
    const flow::MixResult r = flow::mix_calibration(g, plan, stats, data, reference, opt);
    REQUIRE(r.rows.size() >= 3);
    for (const auto& row : r.rows) {
        REQUIRE(row.cosine.size() == 3);
        for (double c : row.cosine) CHECK(c <= row.cosine[row.chosen]);
        const QParams want = calib::choose_qparams(stats, plan, r.candidates[row.chosen]).at(row.tensor);
        CHECK(r.activations.at(row.tensor).scale == want.scale);
        CHECK(r.activations.at(row.tensor).zero_point == want.zero_point);
    }
    // everything else keeps the model-wise best's parameters
    const auto base = calib::choose_qparams(stats, plan, r.candidates[r.base]);
    std::size_t same = 0;
    for (const auto& kv : base) same += r.activations.at(kv.first).scale == kv.second.scale;
    CHECK(same + r.rows.size() >= base.size());
    fs::remove_all(dir);
}
