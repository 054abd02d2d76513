// bpuq_convert's flow on real models: every artifact is written and valid, the log has the lines
// users grep for, preprocessing reproduces the source model, and bad input fails cleanly.
#include <doctest/doctest.h>

#include <bpuq/flow/convert.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "reference_samples.hpp"

using namespace bpuq;
namespace fs = std::filesystem;

namespace {

struct Temp {
    fs::path dir;
    explicit Temp(const std::string& name) : dir(fs::temp_directory_path() / ("bpuq_flow_" + name)) {
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    ~Temp() { fs::remove_all(dir); }
};

config::ConvertConfig make_config(const std::string& model, const fs::path& work, const std::string& cal, const std::string& type) {
    nlohmann::json j;
    j["model_parameters"] = {{"onnx_model", model}, {"output_model_file_prefix", "m"}, {"working_dir", work.string()}};
    j["input_parameters"] = {{"input_type_train", type}, {"input_type_rt", type}};
    j["calibration_parameters"] = {{"cal_data_dir", cal}, {"calibration_type", "default"}};
    return config::parse_convert_config(j, "test.yaml");
}

bool have(const std::string& rel) {
    if (bpuq_test::path_exists(bpuq_test::data_dir() + "/" + rel)) return true;
    MESSAGE("skipped: " << rel << " not under " << bpuq_test::data_dir());
    return false;
}

std::string read_text(const std::string& p) {
    std::ifstream f(p);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

}  // namespace

TEST_CASE("ResNet-8: full conversion writes every artifact and a log users can grep") {
    if (!have("cifar10/models/resnet8_fp32.onnx")) return;
    Temp t("r8");
    const std::string cal = bpuq_test::write_reference_samples("resnet8_fp32", t.dir / "cal");
    const auto cfg = make_config(bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx", t.dir / "out", cal, "rgb");
    std::ostringstream console;
    const flow::ConvertResult r = flow::convert(cfg, console, {2, 0});
    for (const char* kind : {"original_float_model", "optimized_float_model", "calibrated_model", "quantized_model",
                             "integer_program", "log", "report", "calibration_parameters"}) {
        REQUIRE_MESSAGE(r.artifacts.count(kind), kind);
        CHECK(fs::file_size(r.artifacts.at(kind)) > 0);
    }
    for (const auto& e : fs::directory_iterator(t.dir / "out")) CHECK(e.path().extension() != ".tmp");
    const std::string log = read_text(r.artifacts.at("log"));
    CHECK(log.find("Select ") != std::string::npos);
    CHECK(log.find(" method.") != std::string::npos);
    CHECK(log.find("Node") != std::string::npos);
    CHECK(log.find("Cosine Similarity") != std::string::npos);
    CHECK(log.find("Chebyshev Distance") != std::string::npos);
    const nlohmann::json rep = nlohmann::json::parse(read_text(r.artifacts.at("report")));
    REQUIRE(rep["outputs"].size() == 1);
    const double cos = rep["outputs"][0]["cosine_similarity"].get<double>();
    MESSAGE("ResNet-8 integer program vs float, output cosine " << cos << " with " << rep["calibration"]["method"]);
    CHECK(cos > 0.995);
    CHECK(rep["calibration"]["search"].size() >= 4);
    CHECK(rep["nodes"].size() >= 10);
    // the .bpuq file loads and runs
    std::ifstream f(r.artifacts.at("integer_program"), std::ios::binary);
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    emul::Program p;
    std::string err;
    REQUIRE_MESSAGE(emul::deserialize_program(bytes.data(), bytes.size(), p, &err) == Status::ok, err);
    emul::ProgramExecutor exec(std::move(p));
    const auto y = exec.run({io::read_npy(cal + "/s0.npy")});
    CHECK(y[0].shape() == Shape{1, 10});
}

TEST_CASE("MobileNet V2: the original float model with inserted mean/scale reproduces the source model") {
    if (!have("imagenet/models/mobilenet_v2_1.0_224_fp32.onnx")) return;
    Temp t("mv2");
    // raw pixels: the reference inputs are (x - 128) / 128
    const std::string cal = bpuq_test::write_reference_samples("mobilenet_v2_1.0_224_fp32", t.dir / "cal", 128.0f, 128.0f);
    const std::string model = bpuq_test::data_dir() + "/imagenet/models/mobilenet_v2_1.0_224_fp32.onnx";
    auto cfg = make_config(model, t.dir / "out", cal, "rgb");
    cfg.inputs[0].norm_type = "data_mean_and_scale";
    cfg.inputs[0].mean = {128.0f};
    cfg.inputs[0].scale = {1.0f / 128.0f};
    cfg.calibration_type = "max";
    std::ostringstream console;
    const auto r = flow::convert(cfg, console, {2, 4});
    graph::Executor src{onnx_io::load_model(model)};
    graph::Executor orig{onnx_io::load_model(r.artifacts.at("original_float_model"))};
    graph::ExecContext ctx(2);
    const Tensor ref_in = io::read_npy(bpuq_test::data_dir() + "/reference/mobilenet_v2_1.0_224_fp32/inputs.npy");
    const std::int64_t per = ref_in.numel() / ref_in.dim(0);
    Tensor normalized(DType::float32, {1, 3, 224, 224});
    std::copy(ref_in.data<float>(), ref_in.data<float>() + per, normalized.data<float>());
    const Tensor a = src.run({normalized}, ctx)[0];
    const Tensor b = orig.run({io::read_npy(cal + "/s0.npy")}, ctx)[0];
    const ErrorStats e = compare(a, b);
    MESSAGE("original_float_model vs source: max |diff| " << e.chebyshev);
    CHECK(e.chebyshev < 1e-5);
    const nlohmann::json rep = nlohmann::json::parse(read_text(r.artifacts.at("report")));
    MESSAGE("MobileNet V2 integer program vs float, output cosine " << rep["outputs"][0]["cosine_similarity"]);
    CHECK(rep["outputs"][0]["cosine_similarity"].get<double>() > 0.98);
}

TEST_CASE("bad input fails with an error naming the problem") {
    if (!have("cifar10/models/resnet8_fp32.onnx")) return;
    Temp t("bad");
    const std::string model = bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx";
    std::ostringstream console;
    auto cfg = make_config(model, t.dir / "out", (t.dir / "missing").string(), "rgb");
    CHECK_THROWS_WITH_AS(flow::convert(cfg, console, {1, 0}), doctest::Contains("is not a folder"), bpuq::Error);
    cfg = make_config(model, t.dir / "out", bpuq_test::write_reference_samples("resnet8_fp32", t.dir / "cal"), "rgb");
    cfg.inputs[0].name = "nope";
    CHECK_THROWS_WITH_AS(flow::convert(cfg, console, {1, 0}), doctest::Contains("the model has no input 'nope'"), bpuq::Error);
    cfg = make_config(model, t.dir / "out", (t.dir / "cal").string(), "rgb");
    cfg.onnx_model = (t.dir / "cal" / "s0.npy").string();
    CHECK_THROWS_AS(flow::convert(cfg, console, {1, 0}), bpuq::Error);
    for (const auto& e : fs::recursive_directory_iterator(t.dir)) CHECK(e.path().extension() != ".tmp");
}

namespace {

std::vector<std::uint8_t> program_bytes_without_metadata(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    emul::Program p;
    std::string err;
    REQUIRE_MESSAGE(emul::deserialize_program(bytes.data(), bytes.size(), p, &err) == Status::ok, err);
    p.metadata.erase("calibration");
    return emul::serialize_program(p);
}

}  // namespace

TEST_CASE("load from a run's calibration JSON reproduces that run's program bit for bit (bias correction included)") {
    if (!have("cifar10/models/resnet8_fp32.onnx")) return;
    Temp t("load_json");
    const std::string model = bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx";
    const std::string cal = bpuq_test::write_reference_samples("resnet8_fp32", t.dir / "cal");
    auto first = make_config(model, t.dir / "a", cal, "rgb");
    first.calibration_type = "kl";
    first.optimization.asymmetric = true;
    first.optimization.bias_correction = true;
    std::ostringstream console;
    const auto a = flow::convert(first, console, {2, 4});
    const std::string log_a = read_text(a.artifacts.at("log"));
    CHECK(log_a.find("bias_correction: corrected ") != std::string::npos);
    CHECK(log_a.find("largest shift") != std::string::npos);
    const nlohmann::json cal_json = nlohmann::json::parse(read_text(a.artifacts.at("calibration_parameters")));
    CHECK(cal_json["biases"].size() >= 9);

    auto second = make_config(model, t.dir / "b", cal, "rgb");
    second.calibration_type = "load";
    second.calibration_file = a.artifacts.at("calibration_parameters");
    const auto b = flow::convert(second, console, {1, 4});
    CHECK(read_text(b.artifacts.at("log")).find("Load calibration parameters from") != std::string::npos);
    CHECK(program_bytes_without_metadata(a.artifacts.at("integer_program")) ==
          program_bytes_without_metadata(b.artifacts.at("integer_program")));
    CHECK(read_text(a.artifacts.at("quantized_model")) == read_text(b.artifacts.at("quantized_model")));

    // without calibration data the same file still reproduces the program (tables use random samples)
    auto third = second;
    third.working_dir = (t.dir / "c").string();
    third.inputs[0].cal_data_dir.clear();
    const auto c = flow::convert(third, console, {1, 4});
    CHECK(program_bytes_without_metadata(a.artifacts.at("integer_program")) ==
          program_bytes_without_metadata(c.artifacts.at("integer_program")));
    CHECK(read_text(c.artifacts.at("log")).find("RANDOM samples") != std::string::npos);

    // a bad file names the file and the tensor
    nlohmann::json bad = cal_json;
    const std::string victim = onnx_io::load_model(a.artifacts.at("optimized_float_model")).inputs[0];  // calibrated, not an alias
    REQUIRE(bad["activations"].contains(victim));
    bad["activations"][victim]["bits"] = 16;
    bad["activations"][victim]["zero_points"] = {0};
    const std::string bad_path = (t.dir / "bad_calibration.json").string();
    std::ofstream(bad_path) << bad.dump();
    second.calibration_file = bad_path;
    second.working_dir = (t.dir / "d").string();
    CHECK_THROWS_WITH_AS(flow::convert(second, console, {1, 4}),
                         doctest::Contains((bad_path + ": tensor '" + victim + "' has bits 16").c_str()), bpuq::Error);
    bad = cal_json;
    bad["activations"].erase(victim);
    std::ofstream(bad_path) << bad.dump();
    CHECK_THROWS_WITH_AS(flow::convert(second, console, {1, 4}), doctest::Contains(("'" + victim + "'").c_str()), bpuq::Error);
    second.calibration_file = model;  // a model is not a calibration file
    CHECK_THROWS_WITH_AS(flow::convert(second, console, {1, 4}), doctest::Contains("is an ONNX model"), bpuq::Error);
    second.calibration_file.clear();  // load without a file needs a QDQ model
    CHECK_THROWS_WITH_AS(flow::convert(second, console, {1, 4}), doctest::Contains("has no QuantizeLinear/DequantizeLinear"),
                         bpuq::Error);
    for (const auto& e : fs::recursive_directory_iterator(t.dir)) CHECK(e.path().extension() != ".tmp");
}

TEST_CASE("per_channel: true quantizes the activations the program can take per channel, and a load reproduces it") {
    if (!have("cifar10/models/resnet8_fp32.onnx")) return;
    Temp t("per_channel");
    const std::string model = bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx";
    const std::string cal = bpuq_test::write_reference_samples("resnet8_fp32", t.dir / "cal");
    auto cfg = make_config(model, t.dir / "a", cal, "rgb");
    cfg.calibration_type = "max";
    cfg.per_channel = true;
    cfg.optimization.asymmetric = true;
    std::ostringstream console;
    const auto a = flow::convert(cfg, console, {2, 4});
    const std::string log = read_text(a.artifacts.at("log"));
    CHECK(log.find("Perchannel quantization is enabled.") != std::string::npos);
    CHECK(log.find("per-channel activations possible for ") != std::string::npos);
    CHECK(log.find("int8 per-channel") != std::string::npos);  // node table
    // per-channel tensors share one zero point; the others stay per tensor
    const nlohmann::json cal_json = nlohmann::json::parse(read_text(a.artifacts.at("calibration_parameters")));
    std::size_t per_channel = 0, per_tensor = 0;
    for (const auto& kv : cal_json["activations"].items()) {
        const auto& e = kv.value();
        if (e["axis"].get<int>() < 0) {
            ++per_tensor;
            continue;
        }
        ++per_channel;
        CHECK(e["axis"].get<int>() == 1);
        for (const auto& z : e["zero_points"]) CHECK(z == e["zero_points"][0]);
    }
    MESSAGE("ResNet-8: " << per_channel << " per-channel and " << per_tensor << " per-tensor activations");
    CHECK(per_channel >= 3);
    CHECK(per_tensor >= 3);
    // the calibrated model folds them into the weights' Calibration nodes; the QDQ model divides them out
    const graph::Graph calibrated = onnx_io::load_model(a.artifacts.at("calibrated_model"));
    std::size_t folded = 0;
    for (const auto& n : calibrated.nodes) folded += n.op_type == "Calibration" && n.attr_string("kind", "") == "weight" && n.inputs.size() == 2;
    CHECK(folded >= 3);
    const graph::Graph qdq = onnx_io::load_model(a.artifacts.at("quantized_model"));
    std::size_t divs = 0, per_axis_q = 0;
    for (const auto& n : qdq.nodes) {
        divs += n.op_type == "Div";
        per_axis_q += n.op_type == "QuantizeLinear" && n.attr_int("axis", -1) == 1 && qdq.initializer(n.inputs[1])->numel() > 1;
    }
    CHECK(divs == folded);
    CHECK(per_axis_q == per_channel);
    const nlohmann::json rep = nlohmann::json::parse(read_text(a.artifacts.at("report")));
    CHECK(rep["outputs"][0]["cosine_similarity"].get<double>() > 0.995);

    // a load of the run's file reproduces the program bit for bit
    auto second = make_config(model, t.dir / "b", cal, "rgb");
    second.calibration_type = "load";
    second.calibration_file = a.artifacts.at("calibration_parameters");
    const auto b = flow::convert(second, console, {1, 4});
    CHECK(program_bytes_without_metadata(a.artifacts.at("integer_program")) ==
          program_bytes_without_metadata(b.artifacts.at("integer_program")));

    // per-channel parameters on a tensor an Add reads are refused, naming the file, tensor and reason
    nlohmann::json bad = cal_json;
    std::string victim;
    for (const auto& n : onnx_io::load_model(a.artifacts.at("optimized_float_model")).nodes)
        if (n.op_type == "Add" && victim.empty() && bad["activations"].contains(n.outputs[0])) victim = n.outputs[0];
    REQUIRE_MESSAGE(!victim.empty(), "no per-tensor Add output in the calibration file");
    auto& e = bad["activations"][victim];
    e["axis"] = 1;
    e["scales"] = std::vector<float>(16, e["scales"][0].get<float>());
    e["zero_points"] = std::vector<int>(16, e["zero_points"][0].get<int>());
    const std::string bad_path = (t.dir / "bad_calibration.json").string();
    std::ofstream(bad_path) << bad.dump();
    second.calibration_file = bad_path;
    second.working_dir = (t.dir / "c").string();
    CHECK_THROWS_WITH_AS(flow::convert(second, console, {1, 4}),
                         doctest::Contains((bad_path + ": tensor '" + victim + "' has per-channel parameters").c_str()), bpuq::Error);
    for (const auto& x : fs::recursive_directory_iterator(t.dir)) CHECK(x.path().extension() != ".tmp");
}

TEST_CASE("load from a QDQ model: ResNet-8 int8 (TFLite) — the program computes what the QDQ model computes") {
    if (!have("cifar10/models/resnet8_int8_qdq.onnx")) return;
    Temp t("load_qdq");
    const std::string model = bpuq_test::data_dir() + "/cifar10/models/resnet8_int8_qdq.onnx";
    const std::string cal = bpuq_test::write_reference_samples("resnet8_fp32", t.dir / "cal");
    // the last tensor before the average pool: the QDQ model's float average of a tie can round either way
    // (float sums), where the program's integer average is exact; the logits then differ by up to 2 steps
    const std::string last = "model_activation_6_Relu;model_add_2_add_33";
    auto cfg = make_config(model, t.dir / "out", cal, "rgb");
    cfg.calibration_type = "load";
    cfg.output_nodes = {last};
    cfg.optimization.set_model_output_int8 = true;  // the program returns the int8 tensor
    std::ostringstream console;
    const auto r = flow::convert(cfg, console, {2, 8});
    const std::string log = read_text(r.artifacts.at("log"));
    CHECK(log.find("load: 18 of 18 activations from the QDQ model") != std::string::npos);
    CHECK(log.find("weights: 10 of 10 keep the QDQ model's integers and scales") != std::string::npos);
    // the QDQ model itself (bpuq's float executor, ONNX semantics) vs the integer program on the reference samples
    graph::Graph g = onnx_io::load_model(model);
    g.outputs = {last};
    graph::Executor qdq{std::move(g)};
    std::ifstream f(r.artifacts.at("integer_program"), std::ios::binary);
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    emul::Program p;
    REQUIRE(emul::deserialize_program(bytes.data(), bytes.size(), p) == Status::ok);
    CHECK(p.metadata.at("rounding") == "half_to_even");
    const emul::ProgramTensor& out = p.tensors[std::size_t(p.outputs[0])];
    REQUIRE(out.dtype == DType::int8);
    const float s = out.quant.scales[0];
    const int zp = out.quant.zero_points[0];
    emul::ProgramExecutor prog(std::move(p));
    graph::ExecContext ctx(1);
    int same = 0, total = 0, worst = 0;
    for (int k = 0; k < 8; ++k) {
        const Tensor x = io::read_npy(cal + "/s" + std::to_string(k) + ".npy");
        const Tensor a = qdq.run({x}, ctx)[0], b = prog.run({x})[0];
        REQUIRE(a.numel() == b.numel());
        for (std::int64_t i = 0; i < a.numel(); ++i) {
            const int qa = int(std::lround(a.data<float>()[i] / s)) + zp, qb = b.data<std::int8_t>()[i];
            same += qa == qb;
            worst = std::max(worst, std::abs(qa - qb));
            ++total;
        }
    }
    MESSAGE("QDQ model vs integer program, last int8 activation: " << same << " of " << total << " identical, max difference " << worst);
    // the output table compares the program's int8 output dequantized (not its raw integers) with the float model
    const nlohmann::json rep = nlohmann::json::parse(read_text(r.artifacts.at("report")));
    CHECK(rep["outputs"][0]["cosine_similarity"].get<double>() > 0.99);
    CHECK(worst <= 1);
    CHECK(same >= total * 999 / 1000);
}

TEST_CASE("skip calibrates on random data and says loudly that the result is not accurate") {
    if (!have("cifar10/models/resnet8_fp32.onnx")) return;
    Temp t("skip");
    auto cfg = make_config(bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx", t.dir / "out", "unused", "rgb");
    cfg.inputs[0].cal_data_dir.clear();
    cfg.calibration_type = "skip";
    std::ostringstream console;
    const auto r = flow::convert(cfg, console, {2, 0});
    const std::string log = read_text(r.artifacts.at("log"));
    CHECK(log.find("WARNING: calibration_type skip") != std::string::npos);
    CHECK(log.find("NOT meaningful") != std::string::npos);
    const nlohmann::json rep = nlohmann::json::parse(read_text(r.artifacts.at("report")));
    CHECK(rep["calibration"]["random_data"] == true);
    CHECK(rep["calibration"]["samples"] == 8);
    CHECK(rep["calibration"]["warning"].get<std::string>().find("speed checks only") != std::string::npos);
    CHECK(fs::file_size(r.artifacts.at("integer_program")) > 0);
}
