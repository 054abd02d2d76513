// Export IR -> ONNX: real models (plain and optimized) survive import -> export -> check_model
// -> import with identical outputs.
#include <doctest/doctest.h>

#include <bpuq/io/npy.hpp>
#include <bpuq/onnx.hpp>

#include <onnx/checker.h>

#include <cstdio>
#include <string>

#include "model_compare.hpp"
#include "test_support.hpp"

using namespace bpuq;

TEST_CASE("export: round trip of the real models passes onnx::checker and keeps outputs") {
    const char* models[][2] = {
        {"mnist-8", "mnist/mnist-8.onnx"},
        {"resnet8_fp32", "cifar10/models/resnet8_fp32.onnx"},
        {"squeezenet1.1_fp32", "imagenet/models/squeezenet1.1_fp32.onnx"},
        {"mobilenet_v2_1.0_224_fp32", "imagenet/models/mobilenet_v2_1.0_224_fp32.onnx"},
    };
    const std::string dir = bpuq_test::data_dir();
    for (const auto& m : models) {
        const std::string path = dir + "/" + m[1];
        if (!bpuq_test::path_exists(path)) {
            MESSAGE("skipped " << m[0] << ": data missing");
            continue;
        }
        for (bool optimized : {false, true}) {
            INFO(std::string(m[0]) << (optimized ? " optimized" : " plain"));
            graph::Graph g = onnx_io::load_model(path);
            if (optimized) graph::optimize(g);
            const ::onnx::ModelProto proto = onnx_io::export_model(g);
            CHECK_NOTHROW(::onnx::checker::check_model(proto));
            const std::string out = std::string("bpuq_roundtrip_") + m[0] + (optimized ? "_opt" : "") + ".onnx";
            onnx_io::save_model(g, out);
            graph::Graph back = onnx_io::load_model(out);
            std::remove(out.c_str());
            CHECK(back.inputs == g.inputs);
            CHECK(back.outputs == g.outputs);
            CHECK(back.initializers.size() >= g.initializers.size());
            // same outputs on a deterministic input
            const graph::Value* in = g.find_value(g.inputs[0]);
            REQUIRE(in);
            Shape s = in->shape;
            for (auto& d : s) d = d < 0 ? 1 : d;
            Tensor x(DType::float32, s);
            for (std::int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = float((i * 37) % 255);
            graph::Executor a(g), b(back);
            graph::ExecContext ctx;
            const Tensor ya = a.run({x}, ctx)[0], yb = b.run({x}, ctx)[0];
            REQUIRE(ya.shape() == yb.shape());
            for (std::int64_t i = 0; i < ya.numel(); ++i) CHECK(ya.data<float>()[i] == yb.data<float>()[i]);
        }
    }
}
