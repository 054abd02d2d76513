// Passes on built graphs: BatchNormalization folding into Conv and Gemm, constant folding,
// Identity removal, Conv+Clip fusion and reshape chains keep the outputs.
#include <doctest/doctest.h>

#include <bpuq/graph.hpp>

#include <cmath>
#include <random>

#include "graph_builder.hpp"
#include "test_support.hpp"

using namespace bpuq;
using namespace bpuq::graph;
using bpuq_test::declare_input;
using bpuq_test::make_node;

namespace {
Tensor rnd(Shape s, float lo = -1.f, float hi = 1.f) {
    Tensor t(DType::float32, std::move(s));
    std::uniform_real_distribution<float> d(lo, hi);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(bpuq_test::rng());
    return t;
}
void add_bn(Graph& g, const std::string& in, const std::string& out, std::int64_t c) {
    g.initializers[out + "_s"] = rnd({c}, 0.5f, 1.5f);
    g.initializers[out + "_b"] = rnd({c});
    g.initializers[out + "_m"] = rnd({c});
    g.initializers[out + "_v"] = rnd({c}, 0.1f, 2.f);
    g.nodes.push_back(make_node("BatchNormalization", {in, out + "_s", out + "_b", out + "_m", out + "_v"}, {out}));
}
void check_same(const Graph& a, const Graph& b, const Tensor& x) {
    Executor ea(a), eb(b);
    ExecContext ctx;
    const Tensor ya = ea.run({x}, ctx)[0], yb = eb.run({x}, ctx)[0];
    REQUIRE(ya.shape() == yb.shape());
    for (std::int64_t i = 0; i < ya.numel(); ++i)
        CHECK(yb.data<float>()[i] == doctest::Approx(ya.data<float>()[i]).epsilon(1e-4).scale(1.0));
}
std::size_t count_op(const Graph& g, const std::string& op) {
    std::size_t c = 0;
    for (const auto& n : g.nodes) c += n.op_type == op;
    return c;
}
}  // namespace

TEST_CASE("passes: Conv+BN+Clip and Gemm+BN fold; constants, identities and reshape chains go") {
    Graph g;
    g.opset = 13;
    declare_input(g, "x", {1, 3, 8, 8});
    g.initializers["w"] = rnd({4, 3, 3, 3});
    g.nodes.push_back(make_node("Conv", {"x", "w"}, {"c"}));  // no bias: folding adds one
    add_bn(g, "c", "bn", 4);
    g.initializers["lo"] = Tensor::from_vector<float>({}, {0.f});
    g.initializers["hi"] = Tensor::from_vector<float>({}, {0.5f});
    g.nodes.push_back(make_node("Clip", {"bn", "lo", "hi"}, {"act"}));
    g.nodes.push_back(make_node("Identity", {"act"}, {"id"}));
    Node flat = make_node("Flatten", {"id"}, {"f"});
    g.nodes.push_back(flat);
    g.initializers["shape"] = Tensor::from_vector<std::int64_t>({2}, {1, -1});
    g.nodes.push_back(make_node("Reshape", {"f", "shape"}, {"r"}));
    g.initializers["gw"] = rnd({5, 144});
    g.initializers["gb"] = rnd({5});
    Node gemm = make_node("Gemm", {"r", "gw", "gb"}, {"gm"});
    gemm.attributes["transB"] = Attribute::make_int(1);
    g.nodes.push_back(gemm);
    add_bn(g, "gm", "bn2", 5);
    // a constant subgraph: (k1 + k2) feeds an Add
    g.initializers["k1"] = rnd({5});
    g.initializers["k2"] = rnd({5});
    g.nodes.push_back(make_node("Add", {"k1", "k2"}, {"k"}));
    g.nodes.push_back(make_node("Add", {"bn2", "k"}, {"y"}));
    g.outputs = {"y"};
    g.sort();
    infer_shapes(g);

    Graph o = g;
    const OptimizeReport r = optimize(o);
    CHECK(r.batchnorms == 2);
    CHECK(r.activations == 1);
    CHECK(r.identities == 1);
    CHECK(r.constants == 1);
    CHECK(r.reshapes >= 1);
    CHECK(count_op(o, "BatchNormalization") == 0);
    CHECK(count_op(o, "Clip") == 0);
    CHECK(count_op(o, "Flatten") + count_op(o, "Reshape") == 1);
    CHECK(o.nodes.size() == 4);  // Conv(+clip), Reshape, Gemm, Add
    check_same(g, o, rnd({1, 3, 8, 8}));
}

TEST_CASE("passes: a BatchNormalization whose input has other readers is not folded") {
    Graph g;
    declare_input(g, "x", {1, 2, 4, 4});
    g.initializers["w"] = rnd({2, 2, 1, 1});
    g.nodes.push_back(make_node("Conv", {"x", "w"}, {"c"}));
    add_bn(g, "c", "bn", 2);
    g.nodes.push_back(make_node("Add", {"bn", "c"}, {"y"}));
    g.outputs = {"y"};
    Graph o = g;
    const OptimizeReport r = optimize(o);
    CHECK(r.batchnorms == 0);
    check_same(g, o, rnd({1, 2, 4, 4}));
}
