// Lowering real models to integer programs: the integer emulation tracks the fake-quant graph,
// the SIMD and reference kernels give identical bits, and a .bpuq round trip changes nothing.
#include <doctest/doctest.h>

#include <bpuq/calib/search.hpp>
#include <bpuq/emul/executor.hpp>
#include <bpuq/emul/lower.hpp>
#include <bpuq/emul/program_format.hpp>
#include <bpuq/graph/passes.hpp>
#include <bpuq/io/npy.hpp>
#include <bpuq/onnx/import.hpp>

#include <filesystem>

#include "reference_samples.hpp"

using namespace bpuq;
namespace fs = std::filesystem;

namespace {

struct Flow {
    graph::Graph optimized;
    calib::QuantPlan plan;
    std::map<std::string, QParams> acts, weights;
    std::unique_ptr<io::CalibrationSet> data;
    std::string dir;
};

Flow calibrate(const std::string& model_path, const std::string& reference, const calib::CalibChoice& choice) {
    Flow f;
    f.optimized = onnx_io::load_model(model_path);
    graph::optimize(f.optimized);
    f.plan = calib::make_quant_plan(f.optimized, config::ConvertConfig{});
    f.dir = bpuq_test::write_reference_samples(reference, fs::temp_directory_path() / ("bpuq_lower_" + reference));
    const Shape one = io::read_npy(f.dir + "/s0.npy").shape();
    f.data = std::make_unique<io::CalibrationSet>(
        std::vector<io::CalibrationInputSpec>{{f.optimized.inputs[0], f.dir, "float32", one}});
    graph::Executor fexec{graph::Graph(f.optimized)};
    calib::CollectOptions opt;
    opt.stats.per_channel = choice.per_channel;
    const auto stats = calib::collect_statistics(fexec, *f.data, f.plan, opt);
    f.acts = calib::choose_qparams(stats, f.plan, choice);
    f.weights = calib::quantize_weights(f.optimized, f.plan, &f.acts);  // folds per-channel inputs' scales
    return f;
}

/// Returns the number of per-channel int8 activation tensors of the program.
std::size_t check_model(const std::string& model_rel, const std::string& reference, const calib::CalibChoice& choice,
                 double min_vs_fake_quant, double min_vs_float) {
    const std::string path = bpuq_test::data_dir() + "/" + model_rel;
    if (!bpuq_test::path_exists(path)) {
        MESSAGE("skipped: " << path << " not found");
        return 0;
    }
    Flow f = calibrate(path, reference, choice);
    const emul::Program prog = emul::lower_to_program(f.optimized, f.plan, f.acts, f.weights);
    const auto bytes = emul::serialize_program(prog);
    emul::Program loaded;
    std::string err;
    REQUIRE_MESSAGE(emul::deserialize_program(bytes.data(), bytes.size(), loaded, &err) == Status::ok, err);

    emul::ProgramExecutor simd_exec(prog, {1, true});
    emul::ProgramExecutor ref_exec(std::move(loaded), {1, false});
    graph::Executor fq{calib::make_calibrated_graph(f.optimized, f.plan, f.acts, f.weights, choice.describe())};
    graph::Executor fl{graph::Graph(f.optimized)};
    graph::ExecContext ctx(1);
    ErrorAccumulator int_vs_fq, int_vs_float, fq_vs_float;
    std::vector<Tensor> first;
    for (std::size_t s = 0; s < f.data->size(); ++s) {
        const auto in = f.data->load_sample(s);
        const auto a = simd_exec.run(in);
        if (s == 0) first = a;
        const auto b = ref_exec.run(in);
        REQUIRE(a.size() == b.size());
        for (std::size_t k = 0; k < a.size(); ++k) {
            REQUIRE(a[k].nbytes() == b[k].nbytes());
            REQUIRE(std::memcmp(a[k].raw(), b[k].raw(), a[k].nbytes()) == 0);  // SIMD == reference, bit for bit
        }
        const auto q = fq.run(in, ctx);
        const auto x = fl.run(in, ctx);
        int_vs_fq.add(compare(q[0], a[0]));
        int_vs_float.add(compare(x[0], a[0]));
        fq_vs_float.add(compare(x[0], q[0]));
    }
    // runs share the executor's constants: a later run of the first sample gives the same bits
    const auto again = simd_exec.run(f.data->load_sample(0));
    for (std::size_t k = 0; k < again.size(); ++k) REQUIRE(std::memcmp(again[k].raw(), first[k].raw(), again[k].nbytes()) == 0);
    MESSAGE(model_rel << " (" << choice.describe() << "): cosine integer vs fake-quant " << int_vs_fq.mean().cosine
                      << ", integer vs float " << int_vs_float.mean().cosine << ", fake-quant vs float "
                      << fq_vs_float.mean().cosine << "; " << prog.nodes.size() << " program nodes, " << bytes.size()
                      << " bytes");
    CHECK(int_vs_fq.mean().cosine > min_vs_fake_quant);
    CHECK(int_vs_float.mean().cosine > min_vs_float);
    fs::remove_all(f.dir);
    std::size_t per_channel = 0;
    for (const auto& t : prog.tensors) per_channel += t.quant.bits == 8 && t.quant.axis == 1 && t.quant.scales.size() > 1;
    return per_channel;
}

}  // namespace

TEST_CASE("ResNet-8 lowers to an integer program that tracks the fake-quant model") {
    // outputs are softmax probabilities, which amplify logit differences
    check_model("cifar10/models/resnet8_fp32.onnx", "resnet8_fp32", {CalibMethod::max, 1.0, false, false}, 0.999, 0.995);
    check_model("cifar10/models/resnet8_fp32.onnx", "resnet8_fp32", {CalibMethod::kl, 1.0, false, true}, 0.999, 0.5);  // KL clips the raw-pixel input: poor choice, still emulated exactly
    check_model("cifar10/models/resnet8_fp32.onnx", "resnet8_fp32", {CalibMethod::mse, 1.0, false, false}, 0.999, 0.99);
}

TEST_CASE("per-channel activations: the program tracks the fake-quant model with the scales folded into the weights") {
    if (!bpuq_test::path_exists(bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx")) return;
    // symmetric and asymmetric (one zero point shared by the channels); the SIMD and reference
    // programs agree bit for bit inside check_model
    CHECK(check_model("cifar10/models/resnet8_fp32.onnx", "resnet8_fp32", {CalibMethod::max, 1.0, true, false}, 0.999, 0.995) > 0);
    CHECK(check_model("cifar10/models/resnet8_fp32.onnx", "resnet8_fp32", {CalibMethod::max, 1.0, true, true}, 0.999, 0.995) > 0);
    CHECK(check_model("imagenet/models/squeezenet1.1_fp32.onnx", "squeezenet1.1_fp32", {CalibMethod::max, 1.0, true, true}, 0.999,
                      0.995) > 0);
    // depthwise and pointwise layers reading per-channel inputs
    CHECK(check_model("imagenet/models/mobilenet_v1_0.25_128_fp32.onnx", "mobilenet_v1_0.25_128_fp32",
                      {CalibMethod::max, 0.99995, true, false}, 0.99, 0.9) > 0);
}

TEST_CASE("per-channel parameters where an op takes one scale are refused, naming the node") {
    const std::string path = bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx";
    if (!bpuq_test::path_exists(path)) return;
    Flow f = calibrate(path, "resnet8_fp32", {CalibMethod::max, 1.0, false, false});
    // the plan keeps the inputs of Add per tensor; hand it per-channel parameters anyway
    std::string add_input;
    for (const auto& n : f.optimized.nodes)
        if (n.op_type == "Add" && add_input.empty() && !f.optimized.is_initializer(n.inputs[0])) add_input = n.inputs[0];
    REQUIRE(!add_input.empty());
    CHECK_FALSE(f.plan.tensors.at(add_input).channel_ok);
    QParams& q = f.acts.at(f.plan.root_of(add_input));
    const std::size_t C = std::size_t(f.optimized.find_value(add_input)->shape[1]);
    q.axis = 1;
    q.scale.assign(C, q.scale[0]);
    q.zero_point.assign(C, q.zero_point[0]);
    for (auto& kv : f.acts)
        if (f.plan.root_of(kv.first) == f.plan.root_of(add_input)) kv.second = q;
    CHECK_THROWS_WITH_AS(emul::lower_to_program(f.optimized, f.plan, f.acts, f.weights),
                         doctest::Contains("takes one scale per operand"), bpuq::Error);
    // different zero points per channel: refused too
    q.zero_point[1] = q.zero_point[0] + 1;
    for (auto& kv : f.acts)
        if (f.plan.root_of(kv.first) == f.plan.root_of(add_input)) kv.second = q;
    CHECK_THROWS_WITH_AS(emul::lower_to_program(f.optimized, f.plan, f.acts, f.weights),
                         doctest::Contains("one shared zero point"), bpuq::Error);
    fs::remove_all(f.dir);
}

TEST_CASE("MobileNet V1/V2 and SqueezeNet lower and run") {
    // softmax output of 8 samples: one-step rounding differences between the program and the
    // fake-quant model swing it (measured 0.99885 vs fake-quant, 0.99921 vs float, 2026-11-30)
    check_model("imagenet/models/mobilenet_v2_1.0_224_fp32.onnx", "mobilenet_v2_1.0_224_fp32", {CalibMethod::max, 1.0, false, false},
                0.998, 0.995);
    check_model("imagenet/models/squeezenet1.1_fp32.onnx", "squeezenet1.1_fp32", {CalibMethod::max, 1.0, false, true}, 0.999, 0.995);
    // a 0.25-width model: quantization itself costs more here (fake-quant vs float ~0.95 on 8 samples)
    check_model("imagenet/models/mobilenet_v1_0.25_128_fp32.onnx", "mobilenet_v1_0.25_128_fp32",
                {CalibMethod::max, 0.99995, false, false}, 0.99, 0.9);
}

// The ONNX backend tests of Resize / Upsample with real expected outputs: every node in the
// integer form runs on the BPU path (quantize -> resize -> dequantize) and lands within the
// steps the arithmetic implies of ONNX's float result; SIMD and reference programs agree.
TEST_CASE("integer Resize on the ONNX conformance resize tests") {
    const std::string root = bpuq_test::data_dir() + "/onnx_node_tests";
    if (!fs::exists(root)) {
        MESSAGE("skipped: " << root << " missing (set BPUQ_DATA_DIR)");
        return;
    }
    std::vector<std::string> dirs;
    for (const auto& e : fs::directory_iterator(root)) {
        const std::string name = e.path().filename().string();
        if (name.rfind("test_resize_", 0) == 0 || name.rfind("test_upsample_", 0) == 0) dirs.push_back(name);
    }
    std::sort(dirs.begin(), dirs.end());
    int integer = 0, cpu = 0;
    for (const auto& name : dirs) {
        CAPTURE(name);
        graph::Graph g = onnx_io::load_model(root + "/" + name + "/model.onnx");
        const Tensor x = onnx_io::read_tensor_proto_file(root + "/" + name + "/test_data_set_0/input_0.pb");
        const Tensor want = onnx_io::read_tensor_proto_file(root + "/" + name + "/test_data_set_0/output_0.pb");
        // the backend tests feed scales / sizes / roi as inputs; a deployed model has them as constants
        for (std::size_t i = 1; i < g.inputs.size(); ++i)
            g.initializers[g.inputs[i]] = onnx_io::read_tensor_proto_file(root + "/" + name + "/test_data_set_0/input_" +
                                                                          std::to_string(i) + ".pb");
        g.inputs.resize(1);
        graph::optimize(g);
        const calib::QuantPlan plan = calib::make_quant_plan(g, config::ConvertConfig{});
        const graph::Node& node = g.nodes.back();
        if (!plan.nodes.at(node.name).on_bpu) {
            ++cpu;
            CHECK(plan.nodes.at(node.name).reason.find("no integer kernel for this") != std::string::npos);
            continue;
        }
        ++integer;
        float lo = 0.0f, hi = 0.0f;
        for (std::int64_t i = 0; i < x.numel(); ++i) {
            lo = std::min(lo, x.data<float>()[i]);
            hi = std::max(hi, x.data<float>()[i]);
        }
        std::map<std::string, QParams> acts;
        for (const auto& t : plan.calibrated) acts[t] = qparams_from_range(lo, hi, 8, false);
        const QParams q = acts.at(g.inputs[0]);
        const emul::Program prog = emul::lower_to_program(g, plan, acts, {});
        bool has_resize = false;
        for (const auto& n : prog.nodes) has_resize = has_resize || n.op == "resize";
        REQUIRE(has_resize);
        emul::ProgramExecutor simd(prog, {1, true}), ref(prog, {1, false});
        const Tensor got = simd.run({x})[0], got_ref = ref.run({x})[0];
        REQUIRE(got.shape() == want.shape());
        const bool nearest = node.attr_string("mode", "nearest") == "nearest";
        double worst = 0.0;
        for (std::int64_t i = 0; i < got.numel(); ++i) {
            REQUIRE(got.data<float>()[i] == got_ref.data<float>()[i]);
            worst = std::max(worst, std::fabs(double(got.data<float>()[i]) - want.data<float>()[i]) / q.scale[0]);
        }
        // nearest: the input's rounding only; bilinear: input rounding, output rounding and the
        // 11-bit weights (2 * 2^-12 of at most 255 steps)
        CHECK(worst <= (nearest ? 0.5 : 1.0 + 2.0 * 255.0 / 4096.0) + 1e-3);
    }
    MESSAGE(integer << " resize tests in integers, " << cpu << " on the CPU (cubic, crop, antialias, ...)");
    CHECK(integer >= 15);
}
