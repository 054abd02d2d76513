// Graph passes keep float semantics: every real model gives the same outputs (within float
// rounding) before and after optimize(), and the passes really rewrite the graphs.
#include <doctest/doctest.h>

#include <bpuq/io/npy.hpp>
#include <bpuq/onnx.hpp>

#include <string>

#include "model_compare.hpp"
#include "test_support.hpp"

using namespace bpuq;

TEST_CASE("optimize() keeps the real models' outputs") {
    struct M {
        const char *name, *path;
        bool expect_fusion;
    };
    const M models[] = {
        {"resnet8_fp32", "cifar10/models/resnet8_fp32.onnx", true},
        {"squeezenet1.1_fp32", "imagenet/models/squeezenet1.1_fp32.onnx", true},
        {"mobilenet_v1_0.25_128_fp32", "imagenet/models/mobilenet_v1_0.25_128_fp32.onnx", true},
        {"mobilenet_v2_1.0_224_fp32", "imagenet/models/mobilenet_v2_1.0_224_fp32.onnx", true},
    };
    const std::string dir = bpuq_test::data_dir();
    for (const M& m : models) {
        const std::string ref = dir + "/reference/" + m.name;
        if (!bpuq_test::path_exists(dir + "/" + m.path)) {
            MESSAGE("skipped " << m.name << ": data missing");
            continue;
        }
        graph::Graph g = onnx_io::load_model(dir + "/" + m.path);
        graph::Graph opt_g = g;
        const auto report = graph::optimize(opt_g);
        INFO(std::string(m.name) << ": " << g.nodes.size() << " -> " << opt_g.nodes.size() << " nodes; identities " << report.identities
                    << ", constants " << report.constants << ", batchnorms " << report.batchnorms << ", activations "
                    << report.activations << ", reshapes " << report.reshapes);
        if (m.expect_fusion) CHECK(report.activations > 0);
        CHECK(opt_g.nodes.size() < g.nodes.size());
        graph::Executor before(g), after(opt_g);
        graph::ExecContext ctx(1);
        const Tensor inputs = io::read_npy(ref + "/inputs.npy");
        const std::int64_t per = inputs.numel() / inputs.dim(0);
        for (std::int64_t i = 0; i < inputs.dim(0); ++i) {
            Shape s = inputs.shape();
            s[0] = 1;
            Tensor x(DType::float32, s);
            std::copy(inputs.data<float>() + i * per, inputs.data<float>() + (i + 1) * per, x.data<float>());
            const Tensor a = before.run({x}, ctx)[0], b = after.run({x}, ctx)[0];
            REQUIRE(a.shape() == b.shape());
            const auto agree = bpuq_test::compare(b.data<float>(), a.data<float>(), a.numel());
            CHECK(agree.cosine >= 0.999999);
            CHECK(agree.max_abs <= 1e-5 * agree.range + 1e-7);
        }
    }
}
