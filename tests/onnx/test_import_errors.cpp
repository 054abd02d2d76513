// The importer on bad input: every problem is a bpuq::Error with a stable id and a message
// naming the file/node/tensor; plus storage forms (typed fields, float16, external data).
#include <doctest/doctest.h>

#include <bpuq/onnx.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

#include "test_support.hpp"

using namespace bpuq;

namespace {

/// A one-node model: y = Relu(x) or a caller-chosen op, opset 13, IR 8.
::onnx::ModelProto tiny_model(const std::string& op = "Relu") {
    ::onnx::ModelProto m;
    m.set_ir_version(8);
    m.add_opset_import()->set_version(13);
    auto* g = m.mutable_graph();
    g->set_name("tiny");
    auto* in = g->add_input();
    in->set_name("x");
    in->mutable_type()->mutable_tensor_type()->set_elem_type(::onnx::TensorProto::FLOAT);
    in->mutable_type()->mutable_tensor_type()->mutable_shape()->add_dim()->set_dim_value(4);
    auto* out = g->add_output();
    out->set_name("y");
    out->mutable_type()->mutable_tensor_type()->set_elem_type(::onnx::TensorProto::FLOAT);
    auto* n = g->add_node();
    n->set_name("the_node");
    n->set_op_type(op);
    n->add_input("x");
    n->add_output("y");
    return m;
}

std::string error_of(const ::onnx::ModelProto& m, const std::string& dir = "") {
    try {
        onnx_io::import_model(m, dir);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}
std::string error_of_file(const std::string& path) {
    try {
        onnx_io::load_model(path);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}
std::string write_file(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary);
    f << bytes;
    return path;
}

}  // namespace

TEST_CASE("import: unreadable, empty, truncated and non-protobuf files") {
    CHECK(error_of_file("/nonexistent/model.onnx").find("[bpuq.onnx.open]") == 0);
    const std::string empty = write_file("bpuq_empty.onnx", "");
    CHECK(error_of_file(empty).find("[bpuq.onnx.parse]") == 0);
    std::remove(empty.c_str());
    const std::string junk = write_file("bpuq_junk.onnx", "this is not a protobuf \xff\xff\xff\xff");
    const std::string e = error_of_file(junk);
    CHECK(e.find("[bpuq.onnx.parse]") == 0);
    CHECK(e.find("bpuq_junk.onnx") != std::string::npos);
    std::remove(junk.c_str());
    const std::string mnist = bpuq_test::data_dir() + "/mnist/mnist-8.onnx";
    if (bpuq_test::path_exists(mnist)) {
        std::ifstream f(mnist, std::ios::binary);
        const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        for (std::size_t cut : {bytes.size() / 2, bytes.size() - 3, std::size_t(40)}) {
            const std::string t = write_file("bpuq_truncated.onnx", bytes.substr(0, cut));
            CHECK_THROWS_AS(onnx_io::load_model(t), Error);
            std::remove(t.c_str());
        }
    }
}

TEST_CASE("import: versions, unsupported ops, dangling edges and cycles") {
    auto m = tiny_model();
    CHECK(error_of(m).empty());
    m.set_ir_version(10);
    CHECK(error_of(m).find("[bpuq.onnx.ir_version]") == 0);
    m = tiny_model();
    m.mutable_opset_import(0)->set_version(21);
    CHECK(error_of(m).find("[bpuq.onnx.opset]") == 0);

    const std::string e = error_of(tiny_model("NonMaxSuppression"));
    CHECK(e.find("[bpuq.graph.unsupported]") == 0);
    CHECK(e.find("the_node") != std::string::npos);
    CHECK(e.find("NonMaxSuppression") != std::string::npos);
    CHECK(e.find("opset 13") != std::string::npos);
    CHECK(e.find("MaxPool") != std::string::npos);  // the list of supported ops

    m = tiny_model("Add");  // second input is neither input, initializer nor output
    m.mutable_graph()->mutable_node(0)->add_input("w");
    CHECK(error_of(m).find("[bpuq.graph.dangling]") == 0);
    CHECK(error_of(m).find("'w'") != std::string::npos);

    m = tiny_model("Add");
    m.mutable_graph()->mutable_node(0)->add_input("z");
    auto* n2 = m.mutable_graph()->add_node();
    n2->set_name("loop_back");
    n2->set_op_type("Relu");
    n2->add_input("y");
    n2->add_output("z");
    CHECK(error_of(m).find("[bpuq.graph.cycle]") == 0);
}

TEST_CASE("import: initializers in typed fields, float16 upcast, bad sizes and overflowing dims") {
    auto m = tiny_model("Add");
    m.mutable_graph()->mutable_node(0)->add_input("w");
    auto* w = m.mutable_graph()->add_initializer();
    w->set_name("w");
    w->set_data_type(::onnx::TensorProto::FLOAT16);
    w->add_dims(4);
    const std::uint16_t halves[4] = {0x3c00, 0xc000, 0x0001, 0x7bff};  // 1, -2, 2^-24, 65504
    w->set_raw_data(std::string(reinterpret_cast<const char*>(halves), 8));
    graph::Graph g = onnx_io::import_model(m, "");
    const Tensor& t = g.initializers.at("w");
    REQUIRE(t.dtype() == DType::float32);
    CHECK(t.data<float>()[0] == 1.f);
    CHECK(t.data<float>()[1] == -2.f);
    CHECK(t.data<float>()[2] == std::ldexp(1.f, -24));
    CHECK(t.data<float>()[3] == 65504.f);

    w->set_data_type(::onnx::TensorProto::INT8);
    w->clear_raw_data();
    for (int v : {-128, -1, 0, 127}) w->add_int32_data(v);
    g = onnx_io::import_model(m, "", {false, false});
    CHECK(g.initializers.at("w").data<std::int8_t>()[0] == -128);
    CHECK(g.initializers.at("w").data<std::int8_t>()[3] == 127);

    w->add_int32_data(5);  // 5 values for 4 elements
    CHECK(error_of(m).find("[bpuq.onnx.tensor]") == 0);
    w->clear_int32_data();
    w->set_raw_data(std::string(3, '\0'));
    CHECK(error_of(m).find("[bpuq.onnx.tensor]") == 0);

    w->clear_dims();
    for (int i = 0; i < 3; ++i) w->add_dims(std::int64_t(1) << 30);
    CHECK(error_of(m).find("[bpuq.onnx.shape]") == 0);
    w->clear_dims();
    w->add_dims(-3);
    CHECK(error_of(m).find("[bpuq.onnx.shape]") == 0);

    m.mutable_graph()->mutable_initializer(0)->set_data_type(::onnx::TensorProto::STRING);
    CHECK(error_of(m).find("[bpuq.onnx.dtype]") == 0);
}

TEST_CASE("import: external data resolves inside the model folder and nowhere else") {
    const std::string dir = "bpuq_extdata_test";
    ::mkdir(dir.c_str(), 0755);
    const float vals[4] = {1.f, 2.f, 3.f, 4.f};
    write_file(dir + "/weights.bin", std::string("PAD!") + std::string(reinterpret_cast<const char*>(vals), 16));
    auto m = tiny_model("Add");
    m.mutable_graph()->mutable_node(0)->add_input("w");
    auto* w = m.mutable_graph()->add_initializer();
    w->set_name("w");
    w->set_data_type(::onnx::TensorProto::FLOAT);
    w->add_dims(4);
    w->set_data_location(::onnx::TensorProto::EXTERNAL);
    auto set_location = [&](const std::string& loc, const std::string& offset) {
        w->clear_external_data();
        auto* kv = w->add_external_data();
        kv->set_key("location");
        kv->set_value(loc);
        kv = w->add_external_data();
        kv->set_key("offset");
        kv->set_value(offset);
    };
    set_location("weights.bin", "4");
    {
        std::ofstream f(dir + "/model.onnx", std::ios::binary);
        m.SerializeToOstream(&f);
    }
    graph::Graph g = onnx_io::load_model(dir + "/model.onnx");
    CHECK(g.initializers.at("w").data<float>()[2] == 3.f);

    set_location("../weights.bin", "0");
    CHECK(error_of(m, dir).find("[bpuq.onnx.external_data]") == 0);
    set_location("sub/../../etc/passwd", "0");
    CHECK(error_of(m, dir).find("escapes") != std::string::npos);
    set_location("/etc/passwd", "0");
    CHECK(error_of(m, dir).find("absolute") != std::string::npos);
    set_location("weights.bin", "12");  // 16 bytes wanted, 8 left
    CHECK(error_of(m, dir).find("too small") != std::string::npos);
    set_location("missing.bin", "0");
    CHECK(error_of(m, dir).find("cannot open") != std::string::npos);
    ::symlink("/etc/hostname", (dir + "/link.bin").c_str());
    set_location("link.bin", "0");
    CHECK(error_of(m, dir).find("outside the model's folder") != std::string::npos);
    set_location("weights.bin", "4");
    CHECK(error_of(m, "").find("not loaded from a file") != std::string::npos);
    std::remove((dir + "/link.bin").c_str());
    std::remove((dir + "/weights.bin").c_str());
    std::remove((dir + "/model.onnx").c_str());
    ::rmdir(dir.c_str());
}
