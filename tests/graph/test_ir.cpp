// Graph IR: lookups, topological sort (stable, cycles, dangling edges), shape inference.
#include <doctest/doctest.h>

#include <bpuq/graph.hpp>

#include "graph_builder.hpp"

using namespace bpuq;
using namespace bpuq::graph;
using bpuq_test::declare_input;
using bpuq_test::make_node;

namespace {
std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}
}  // namespace

TEST_CASE("graph: sort orders nodes by dependencies and keeps independent ones stable") {
    Graph g;
    declare_input(g, "x", {1, 4});
    g.nodes.push_back(make_node("Relu", {"b"}, {"c"}, "third"));
    g.nodes.push_back(make_node("Relu", {"x"}, {"a"}, "first"));
    g.nodes.push_back(make_node("Relu", {"a"}, {"b"}, "second"));
    g.nodes.push_back(make_node("Sigmoid", {"x"}, {"d"}, "independent"));
    g.outputs = {"c", "d"};
    g.sort();
    std::vector<std::string> order;
    for (const auto& n : g.nodes) order.push_back(n.name);
    CHECK(order == std::vector<std::string>{"first", "second", "third", "independent"});
    CHECK(g.find_node("second") == 1);
    CHECK(g.find_node("nope") == -1);
    CHECK(g.producer_of("b") == 1);
    CHECK(g.producer_of("x") == -1);
    CHECK(g.consumers_of("x") == std::vector<std::size_t>{0, 3});
    CHECK(g.is_graph_output("d"));
}

TEST_CASE("graph: cycles, dangling edges, duplicate producers are errors naming the nodes") {
    Graph g;
    declare_input(g, "x", {1});
    g.nodes.push_back(make_node("Add", {"x", "b"}, {"a"}, "n_a"));
    g.nodes.push_back(make_node("Relu", {"a"}, {"b"}, "n_b"));
    g.outputs = {"b"};
    std::string e = error_of([&] { g.sort(); });
    CHECK(e.find("[bpuq.graph.cycle]") == 0);
    CHECK(e.find("n_a") != std::string::npos);

    Graph d;
    declare_input(d, "x", {1});
    d.nodes.push_back(make_node("Relu", {"missing"}, {"y"}, "reader"));
    d.outputs = {"y"};
    e = error_of([&] { d.sort(); });
    CHECK(e.find("[bpuq.graph.dangling]") == 0);
    CHECK(e.find("reader") != std::string::npos);
    CHECK(e.find("missing") != std::string::npos);

    Graph p;
    declare_input(p, "x", {1});
    p.nodes.push_back(make_node("Relu", {"x"}, {"y"}, "one"));
    p.nodes.push_back(make_node("Relu", {"x"}, {"y"}, "two"));
    p.outputs = {"y"};
    CHECK(error_of([&] { p.sort(); }).find("[bpuq.graph.duplicate]") == 0);

    Graph o;
    declare_input(o, "x", {1});
    o.outputs = {"nowhere"};
    CHECK(error_of([&] { o.sort(); }).find("[bpuq.graph.output]") == 0);
}

TEST_CASE("graph: attributes are typed and missing ones report the node") {
    Node n = make_node("Conv", {"x", "w"}, {"y"}, "conv1");
    n.attributes["strides"] = Attribute::make_ints({2, 2});
    n.attributes["group"] = Attribute::make_int(3);
    CHECK(n.attr_ints("strides") == std::vector<std::int64_t>{2, 2});
    CHECK(n.attr_int("group", 1) == 3);
    CHECK(n.attr_int("missing", 7) == 7);
    const std::string e = error_of([&] { n.attr_float("group", 0.f); });
    CHECK(e.find("conv1") != std::string::npos);
    CHECK(e.find("is int, expected float") != std::string::npos);
}

TEST_CASE("graph: shape inference through conv, pool, reshape and shape arithmetic") {
    Graph g;
    declare_input(g, "x", {1, 3, 32, 32});
    g.initializers["w"] = Tensor(DType::float32, {8, 3, 3, 3});
    Node conv = make_node("Conv", {"x", "w"}, {"c"});
    conv.attributes["pads"] = Attribute::make_ints({1, 1, 1, 1});
    conv.attributes["strides"] = Attribute::make_ints({2, 2});
    Node pool = make_node("MaxPool", {"c"}, {"p"});
    pool.attributes["kernel_shape"] = Attribute::make_ints({2, 2});
    pool.attributes["strides"] = Attribute::make_ints({2, 2});
    // Reshape target computed in the graph: concat(shape(p)[0:1], [-1])
    Node shape = make_node("Shape", {"p"}, {"s"});
    Node slice = make_node("Slice", {"s", "zero", "one"}, {"s0"});
    g.initializers["zero"] = Tensor::from_vector<std::int64_t>({1}, {0});
    g.initializers["one"] = Tensor::from_vector<std::int64_t>({1}, {1});
    g.initializers["minus1"] = Tensor::from_vector<std::int64_t>({1}, {-1});
    Node cat = make_node("Concat", {"s0", "minus1"}, {"target"});
    cat.attributes["axis"] = Attribute::make_int(0);
    Node reshape = make_node("Reshape", {"p", "target"}, {"r"});
    g.nodes = {conv, pool, shape, slice, cat, reshape};
    g.outputs = {"r"};
    g.sort();
    infer_shapes(g);
    CHECK(g.value("c").shape == Shape{1, 8, 16, 16});
    CHECK(g.value("p").shape == Shape{1, 8, 8, 8});
    CHECK(g.value("s").dtype == DType::int64);
    CHECK(g.value("r").shape == Shape{1, 512});
}

TEST_CASE("graph: unsupported ops name the node, op, opset and the supported list") {
    Graph g;
    declare_input(g, "x", {1});
    g.nodes.push_back(make_node("LSTM", {"x"}, {"y"}, "rnn"));
    g.outputs = {"y"};
    g.opset = 13;
    const std::string e = error_of([&] { Executor ex(g); });
    CHECK(e.find("[bpuq.graph.unsupported]") == 0);
    CHECK(e.find("rnn") != std::string::npos);
    CHECK(e.find("LSTM") != std::string::npos);
    CHECK(e.find("opset 13") != std::string::npos);
    CHECK(e.find("Conv") != std::string::npos);
}

TEST_CASE("context: parallel_for covers every index exactly once") {
    for (int threads : {1, 2, 3}) {
        ExecContext ctx(threads);
        CHECK(ctx.threads() == threads);
        for (std::int64_t n : {0, 1, 7, 1000}) {
            std::vector<int> hits(std::size_t(n), 0);
            for (int rep = 0; rep < 20; ++rep)
                ctx.parallel_for(n, 1, [&](std::int64_t b, std::int64_t e) {
                    for (std::int64_t i = b; i < e; ++i) ++hits[std::size_t(i)];
                });
            for (int h : hits) CHECK(h == 20);
        }
    }
}
