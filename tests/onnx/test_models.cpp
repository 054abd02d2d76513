// The real models on their reference inputs vs ONNX Runtime 1.30.0's outputs, and mnist-8
// on the model zoo's own test sets.
#include <doctest/doctest.h>

#include <bpuq/io/npy.hpp>
#include <bpuq/onnx.hpp>

#include <string>

#include "model_compare.hpp"
#include "test_support.hpp"

using namespace bpuq;

namespace {

struct RefModel {
    const char* name;
    const char* path;  // relative to the data dir
};
const RefModel kModels[] = {
    {"resnet8_fp32", "cifar10/models/resnet8_fp32.onnx"},
    {"squeezenet1.1_fp32", "imagenet/models/squeezenet1.1_fp32.onnx"},
    {"mobilenet_v1_0.25_128_fp32", "imagenet/models/mobilenet_v1_0.25_128_fp32.onnx"},
    {"mobilenet_v2_1.0_224_fp32", "imagenet/models/mobilenet_v2_1.0_224_fp32.onnx"},
};

/// Runs sample i of `inputs` (first axis = samples) through a batch-1 model.
Tensor run_sample(const graph::Executor& ex, const Tensor& inputs, std::int64_t i, const graph::ExecContext& ctx) {
    Shape s = inputs.shape();
    s[0] = 1;
    const std::int64_t per = inputs.numel() / inputs.dim(0);
    Tensor x(DType::float32, s);
    std::copy(inputs.data<float>() + i * per, inputs.data<float>() + (i + 1) * per, x.data<float>());
    return ex.run({x}, ctx)[0];
}

void check_reference(const RefModel& m, int threads) {
    const std::string dir = bpuq_test::data_dir();
    const std::string model = dir + "/" + m.path, ref = dir + "/reference/" + m.name;
    if (!bpuq_test::path_exists(model) || !bpuq_test::path_exists(ref + "/inputs.npy")) {
        MESSAGE("skipped " << m.name << ": data missing under " << dir << " (set BPUQ_DATA_DIR)");
        return;
    }
    graph::Executor ex(onnx_io::load_model(model));
    const Tensor inputs = io::read_npy(ref + "/inputs.npy");
    const Tensor outputs = io::read_npy(ref + "/outputs.npy");
    graph::ExecContext ctx(threads);
    const std::int64_t per_out = outputs.numel() / outputs.dim(0);
    for (std::int64_t i = 0; i < inputs.dim(0); ++i) {
        const Tensor y = run_sample(ex, inputs, i, ctx);
        REQUIRE(y.numel() == per_out);
        const auto a = bpuq_test::compare(y.data<float>(), outputs.data<float>() + i * per_out, per_out);
        INFO(m.name << " sample " << i << " threads " << threads << ": cosine " << a.cosine << " max abs " << a.max_abs
                    << " range " << a.range);
        CHECK(a.cosine >= 0.99999);
        CHECK(a.max_abs <= 1e-4 * a.range);
    }
}

}  // namespace

TEST_CASE("real models match ONNX Runtime on the reference samples") {
    for (const auto& m : kModels) {
        SUBCASE(m.name) {
            check_reference(m, 1);
            check_reference(m, 2);
        }
    }
}

TEST_CASE("mnist-8 matches the model zoo's test sets") {
    const std::string dir = bpuq_test::data_dir() + "/mnist";
    if (!bpuq_test::path_exists(dir + "/mnist-8.onnx")) {
        MESSAGE("skipped: mnist-8 missing (set BPUQ_DATA_DIR)");
        return;
    }
    graph::Executor ex(onnx_io::load_model(dir + "/mnist-8.onnx"));
    graph::ExecContext ctx(1);
    int sets = 0;
    for (int k = 0; k < 10; ++k) {
        const std::string set = dir + "/mnist-8_test_data/test_data_set_" + std::to_string(k);
        if (!bpuq_test::path_exists(set + "/input_0.pb")) continue;
        ++sets;
        const Tensor x = onnx_io::read_tensor_proto_file(set + "/input_0.pb");
        const Tensor want = onnx_io::read_tensor_proto_file(set + "/output_0.pb");
        const Tensor y = ex.run({x}, ctx)[0];
        REQUIRE(y.shape() == want.shape());
        const auto a = bpuq_test::compare(y.data<float>(), want.data<float>(), y.numel());
        INFO("set " << k << ": cosine " << a.cosine << " max abs " << a.max_abs << " range " << a.range);
        CHECK(a.cosine >= 0.99999);
        CHECK(a.max_abs <= 1e-4 * a.range);
    }
    CHECK(sets == 3);
}
