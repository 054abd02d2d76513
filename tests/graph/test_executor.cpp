// Float executor kernels against naive loops: Conv (groups, depthwise, strides, dilations,
// pads, 1x1), Gemm, batched MatMul, pooling, broadcasting; 1 vs several threads.
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

Tensor random_tensor(Shape s) {
    Tensor t(DType::float32, std::move(s));
    std::uniform_real_distribution<float> d(-1.f, 1.f);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(bpuq_test::rng());
    return t;
}

Tensor naive_conv(const Tensor& x, const Tensor& w, const Tensor& b, std::int64_t group, std::vector<std::int64_t> st,
                  std::vector<std::int64_t> dil, std::vector<std::int64_t> pads) {
    const std::int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), M = w.dim(0), KH = w.dim(2), KW = w.dim(3);
    const std::int64_t OH = (H + pads[0] + pads[2] - ((KH - 1) * dil[0] + 1)) / st[0] + 1;
    const std::int64_t OW = (W + pads[1] + pads[3] - ((KW - 1) * dil[1] + 1)) / st[1] + 1;
    Tensor y(DType::float32, {N, M, OH, OW});
    const std::int64_t Cg = C / group, Mg = M / group;
    for (std::int64_t n = 0; n < N; ++n)
        for (std::int64_t m = 0; m < M; ++m)
            for (std::int64_t oh = 0; oh < OH; ++oh)
                for (std::int64_t ow = 0; ow < OW; ++ow) {
                    double acc = b.data<float>()[m];
                    const std::int64_t g = m / Mg;
                    for (std::int64_t c = 0; c < Cg; ++c)
                        for (std::int64_t kh = 0; kh < KH; ++kh)
                            for (std::int64_t kw = 0; kw < KW; ++kw) {
                                const std::int64_t ih = oh * st[0] - pads[0] + kh * dil[0];
                                const std::int64_t iw = ow * st[1] - pads[1] + kw * dil[1];
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                acc += double(x.data<float>()[((n * C + g * Cg + c) * H + ih) * W + iw]) *
                                       w.data<float>()[((m * Cg + c) * KH + kh) * KW + kw];
                            }
                    y.data<float>()[((n * M + m) * OH + oh) * OW + ow] = float(acc);
                }
    return y;
}

double max_diff(const Tensor& a, const Tensor& b) {
    REQUIRE(a.shape() == b.shape());
    double m = 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(double(a.data<float>()[i]) - b.data<float>()[i]));
    return m;
}

Tensor run_single(Graph g, const std::vector<Tensor>& inputs, int threads = 1) {
    Executor ex(std::move(g));
    ExecContext ctx(threads);
    return ex.run(inputs, ctx)[0];
}

}  // namespace

TEST_CASE("executor: Conv matches naive loops over groups, strides, dilations and pads") {
    struct Case {
        std::int64_t N, C, H, W, M, K, group;
        std::vector<std::int64_t> st, dil, pads;
    };
    const Case cases[] = {
        {1, 3, 9, 11, 4, 3, 1, {1, 1}, {1, 1}, {1, 1, 1, 1}},
        {2, 4, 8, 8, 6, 3, 2, {2, 2}, {1, 1}, {0, 1, 1, 0}},
        {1, 8, 10, 7, 8, 3, 8, {1, 1}, {1, 1}, {1, 1, 1, 1}},  // depthwise
        {1, 8, 10, 7, 8, 3, 8, {2, 2}, {1, 1}, {0, 0, 1, 1}},  // depthwise strided
        {1, 6, 12, 12, 6, 3, 6, {1, 2}, {2, 1}, {2, 0, 2, 1}},  // depthwise dilated
        {1, 5, 7, 6, 9, 1, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}},  // pointwise
        {1, 4, 13, 9, 5, 5, 1, {3, 2}, {2, 2}, {3, 1, 0, 2}},
    };
    for (const Case& c : cases) {
        const Tensor x = random_tensor({c.N, c.C, c.H, c.W});
        const Tensor w = random_tensor({c.M, c.C / c.group, c.K, c.K});
        const Tensor b = random_tensor({c.M});
        Graph g;
        declare_input(g, "x", x.shape());
        g.initializers["w"] = w;
        g.initializers["b"] = b;
        Node n = make_node("Conv", {"x", "w", "b"}, {"y"});
        n.attributes["group"] = Attribute::make_int(c.group);
        n.attributes["strides"] = Attribute::make_ints(c.st);
        n.attributes["dilations"] = Attribute::make_ints(c.dil);
        n.attributes["pads"] = Attribute::make_ints(c.pads);
        g.nodes = {n};
        g.outputs = {"y"};
        const Tensor want = naive_conv(x, w, b, c.group, c.st, c.dil, c.pads);
        CHECK(max_diff(run_single(g, {x}, 1), want) < 1e-4);
        CHECK(max_diff(run_single(g, {x}, 3), want) < 1e-4);
    }
}

TEST_CASE("executor: Gemm with transposes, alpha, beta and broadcast C") {
    const Tensor a = random_tensor({5, 7}), b = random_tensor({3, 5}), c = random_tensor({3});
    Graph g;
    declare_input(g, "a", a.shape());
    g.initializers["b"] = b;
    g.initializers["c"] = c;
    Node n = make_node("Gemm", {"a", "b", "c"}, {"y"});
    n.attributes["transA"] = Attribute::make_int(1);
    n.attributes["transB"] = Attribute::make_int(1);
    n.attributes["alpha"] = Attribute::make_float(0.5f);
    n.attributes["beta"] = Attribute::make_float(2.f);
    g.nodes = {n};
    g.outputs = {"y"};
    const Tensor y = run_single(g, {a});
    REQUIRE(y.shape() == Shape{7, 3});
    for (int i = 0; i < 7; ++i)
        for (int j = 0; j < 3; ++j) {
            double acc = 0;
            for (int k = 0; k < 5; ++k) acc += double(a.data<float>()[k * 7 + i]) * b.data<float>()[j * 5 + k];
            CHECK(y.data<float>()[i * 3 + j] == doctest::Approx(0.5 * acc + 2.0 * c.data<float>()[j]).epsilon(1e-5));
        }
}

TEST_CASE("executor: batched MatMul broadcasts batch dims") {
    const Tensor a = random_tensor({2, 1, 3, 4}), b = random_tensor({3, 4, 5});
    Graph g;
    declare_input(g, "a", a.shape());
    declare_input(g, "b", b.shape());
    g.nodes = {make_node("MatMul", {"a", "b"}, {"y"})};
    g.outputs = {"y"};
    const Tensor y = run_single(g, {a, b});
    REQUIRE(y.shape() == Shape{2, 3, 3, 5});
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 3; ++j)
            for (int r = 0; r < 3; ++r)
                for (int c = 0; c < 5; ++c) {
                    double acc = 0;
                    for (int k = 0; k < 4; ++k)
                        acc += double(a.data<float>()[(i * 3 + r) * 4 + k]) * b.data<float>()[(j * 4 + k) * 5 + c];
                    CHECK(y.data<float>()[((i * 3 + j) * 3 + r) * 5 + c] == doctest::Approx(acc).epsilon(1e-5));
                }
}

TEST_CASE("executor: Add broadcasting per channel and scalar; intermediate tensors are freed") {
    const Tensor x = random_tensor({2, 3, 4}), bias = random_tensor({3, 1}), s = Tensor::from_vector<float>({}, {2.f});
    Graph g;
    declare_input(g, "x", x.shape());
    g.initializers["bias"] = bias;
    g.initializers["s"] = s;
    g.nodes = {make_node("Add", {"x", "bias"}, {"t"}), make_node("Mul", {"t", "s"}, {"y"})};
    g.outputs = {"y"};
    const Tensor y = run_single(g, {x});
    for (int i = 0; i < 2; ++i)
        for (int c = 0; c < 3; ++c)
            for (int k = 0; k < 4; ++k) {
                const int idx = (i * 3 + c) * 4 + k;
                CHECK(y.data<float>()[idx] == doctest::Approx(2.f * (x.data<float>()[idx] + bias.data<float>()[c])));
            }
}

TEST_CASE("executor: wrong input shape or dtype is an error naming the input") {
    Graph g;
    declare_input(g, "x", {1, 3});
    g.nodes = {make_node("Relu", {"x"}, {"y"})};
    g.outputs = {"y"};
    Executor ex(g);
    ExecContext ctx;
    try {
        ex.run({Tensor(DType::float32, {1, 4})}, ctx);
        FAIL("expected an error");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find("'x'") != std::string::npos);
    }
    CHECK_THROWS_AS(ex.run({Tensor(DType::int32, {1, 3})}, ctx), Error);
    CHECK_THROWS_AS(ex.run(std::vector<Tensor>{}, ctx), Error);
}
