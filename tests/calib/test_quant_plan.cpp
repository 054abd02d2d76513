// The quantization plan on real models: placement, aliases, int16 requests, and config errors.
#include <doctest/doctest.h>

#include <bpuq/calib/quant_plan.hpp>
#include <bpuq/onnx/import.hpp>

#include "test_support.hpp"

using namespace bpuq;

namespace {
config::ConvertConfig base_config() {
    config::ConvertConfig c;
    c.source = "test.yaml";
    return c;
}
bool have(const std::string& rel) {
    if (bpuq_test::path_exists(bpuq_test::data_dir() + "/" + rel)) return true;
    MESSAGE("skipped: " << rel << " not found under " << bpuq_test::data_dir());
    return false;
}
}  // namespace

TEST_CASE("mnist-8: every node on the BPU, MaxPool and Reshape share their input's scale") {
    if (!have("mnist/mnist-8.onnx")) return;
    const graph::Graph g = onnx_io::load_model(bpuq_test::data_dir() + "/mnist/mnist-8.onnx");
    const calib::QuantPlan plan = calib::make_quant_plan(g, base_config());
    int bpu = 0;
    for (const auto& n : g.nodes) {
        const auto& np = plan.nodes.at(n.name);
        bpu += np.on_bpu;
        if (n.op_type == "MaxPool" || n.op_type == "Reshape") {
            CHECK(np.role == calib::QuantRole::passthrough);
            if (np.on_bpu) CHECK(plan.tensors.at(n.outputs[0]).alias_of == n.inputs[0]);
        }
    }
    CHECK(bpu >= 6);
    // graph input and the final output are quantized; the output stays float by default
    CHECK(plan.is_quantized(g.inputs[0]));
    CHECK(plan.tensors.at(g.outputs[0]).float_output);
    // calibrated tensors never include aliases and every quantized tensor resolves to one
    for (const auto& t : plan.calibrated) CHECK(plan.tensors.at(t).alias_of.empty());
    for (const auto& kv : plan.tensors)
        if (kv.second.quantized) CHECK(std::count(plan.calibrated.begin(), plan.calibrated.end(), plan.root_of(kv.first)) == 1);
    for (const auto& kv : plan.tensors) CHECK(kv.second.bits == 8);
}

TEST_CASE("config overrides: CPU nodes, int16 inputs/outputs, all-int16, and their errors") {
    if (!have("cifar10/models/resnet8_fp32.onnx")) return;
    const graph::Graph g = onnx_io::load_model(bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx");
    const graph::Node* first_conv = nullptr;
    const graph::Node* softmax = nullptr;
    for (const auto& n : g.nodes) {
        if (!first_conv && n.op_type == "Conv") first_conv = &n;
        if (n.op_type == "Softmax") softmax = &n;
    }
    REQUIRE(first_conv);
    REQUIRE(softmax);
    CHECK_FALSE(calib::make_quant_plan(g, base_config()).nodes.at(softmax->name).on_bpu);  // no integer Softmax

    auto c = base_config();
    c.run_on_cpu = {first_conv->name};
    auto plan = calib::make_quant_plan(g, c);
    CHECK_FALSE(plan.nodes.at(first_conv->name).on_bpu);
    CHECK(plan.nodes.at(first_conv->name).reason.find("run_on_cpu") != std::string::npos);

    c = base_config();
    config::NodeInfo info;
    info.input_bits[-1] = 16;
    info.output_bits = 16;
    c.node_info[first_conv->name] = info;
    plan = calib::make_quant_plan(g, c);
    CHECK(plan.tensors.at(first_conv->inputs[0]).bits == 16);
    CHECK(plan.tensors.at(first_conv->outputs[0]).bits == 16);
    CHECK_FALSE(plan.notes.empty());

    c = base_config();
    c.optimization.set_all_nodes_int16 = true;
    plan = calib::make_quant_plan(g, c);
    for (const auto& t : plan.calibrated) CHECK(plan.tensors.at(t).bits == 16);

    c = base_config();
    c.run_on_bpu = {softmax->name};
    CHECK_THROWS_WITH_AS(calib::make_quant_plan(g, c), doctest::Contains("cannot run on the BPU"), bpuq::Error);
    c = base_config();
    c.run_on_cpu = {first_conv->name + "x"};
    const std::string expect = "did you mean '" + first_conv->name + "'";
    CHECK_THROWS_WITH_AS(calib::make_quant_plan(g, c), doctest::Contains(expect.c_str()), bpuq::Error);
}
