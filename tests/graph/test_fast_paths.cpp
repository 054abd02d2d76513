// The float executor's fast paths (AVX-512 GEMM tiles for wide and narrow products, depthwise,
// MaxPool, the packed-weight cache) against naive loops on shapes chosen to hit their edges:
// odd sizes, column and row tails, several k blocks, strides, pads, dilations, groups, fused
// Relu/Clip, 1 and 3 threads. Portable builds run the same cases through the generic paths.
#include <doctest/doctest.h>

#include <bpuq/graph.hpp>

#include <cmath>
#include <limits>
#include <random>

#include "graph_builder.hpp"
#include "test_support.hpp"

using namespace bpuq;
using namespace bpuq::graph;
using bpuq_test::declare_input;
using bpuq_test::make_node;

namespace {

Tensor random_tensor(Shape s, float scale = 1.f) {
    Tensor t(DType::float32, std::move(s));
    std::uniform_real_distribution<float> d(-scale, scale);
    for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(bpuq_test::rng());
    return t;
}

struct ConvCase {
    std::int64_t N, C, H, W, M, KH, KW, group;
    std::vector<std::int64_t> st, dil, pads;
    std::string act;  // "", "Relu" or "Clip" (fused by attributes, as the fusion pass does)
    const char* what;
};

constexpr float kClipLo = -0.25f, kClipHi = 0.5f;

Tensor naive_conv(const Tensor& x, const Tensor& w, const Tensor& b, const ConvCase& c) {
    const std::int64_t OH = (c.H + c.pads[0] + c.pads[2] - ((c.KH - 1) * c.dil[0] + 1)) / c.st[0] + 1;
    const std::int64_t OW = (c.W + c.pads[1] + c.pads[3] - ((c.KW - 1) * c.dil[1] + 1)) / c.st[1] + 1;
    Tensor y(DType::float32, {c.N, c.M, OH, OW});
    const std::int64_t Cg = c.C / c.group, Mg = c.M / c.group;
    for (std::int64_t n = 0; n < c.N; ++n)
        for (std::int64_t m = 0; m < c.M; ++m)
            for (std::int64_t oh = 0; oh < OH; ++oh)
                for (std::int64_t ow = 0; ow < OW; ++ow) {
                    double acc = b.data<float>()[m];
                    const std::int64_t g = m / Mg;
                    for (std::int64_t ci = 0; ci < Cg; ++ci)
                        for (std::int64_t kh = 0; kh < c.KH; ++kh)
                            for (std::int64_t kw = 0; kw < c.KW; ++kw) {
                                const std::int64_t ih = oh * c.st[0] - c.pads[0] + kh * c.dil[0];
                                const std::int64_t iw = ow * c.st[1] - c.pads[1] + kw * c.dil[1];
                                if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                                acc += double(x.data<float>()[((n * c.C + g * Cg + ci) * c.H + ih) * c.W + iw]) *
                                       w.data<float>()[((m * Cg + ci) * c.KH + kh) * c.KW + kw];
                            }
                    if (c.act == "Relu") acc = std::max(acc, 0.0);
                    if (c.act == "Clip") acc = std::min<double>(kClipHi, std::max<double>(kClipLo, acc));
                    y.data<float>()[((n * c.M + m) * OH + oh) * OW + ow] = float(acc);
                }
    return y;
}

/// Largest |a - b| relative to the largest |b| (at least 1).
double rel_diff(const Tensor& a, const Tensor& b) {
    REQUIRE(a.shape() == b.shape());
    double m = 0, range = 1;
    for (std::int64_t i = 0; i < a.numel(); ++i) {
        m = std::max(m, std::fabs(double(a.data<float>()[i]) - b.data<float>()[i]));
        range = std::max(range, std::fabs(double(b.data<float>()[i])));
    }
    return m / range;
}

Graph conv_graph(const ConvCase& c, const Tensor& x, const Tensor& w, const Tensor& b) {
    Graph g;
    declare_input(g, "x", x.shape());
    g.initializers["w"] = w;
    g.initializers["b"] = b;
    Node n = make_node("Conv", {"x", "w", "b"}, {"y"});
    n.attributes["group"] = Attribute::make_int(c.group);
    n.attributes["strides"] = Attribute::make_ints(c.st);
    n.attributes["dilations"] = Attribute::make_ints(c.dil);
    n.attributes["pads"] = Attribute::make_ints(c.pads);
    n.attributes["kernel_shape"] = Attribute::make_ints({c.KH, c.KW});
    if (!c.act.empty()) n.attributes["bpuq_activation"] = Attribute::make_string(c.act);
    if (c.act == "Clip") {
        n.attributes["bpuq_clip_min"] = Attribute::make_float(kClipLo);
        n.attributes["bpuq_clip_max"] = Attribute::make_float(kClipHi);
    }
    g.nodes = {n};
    g.outputs = {"y"};
    return g;
}

}  // namespace

TEST_CASE("fast paths: Conv GEMM tiles (wide, narrow, k blocks, row and column tails) match naive loops") {
    const ConvCase cases[] = {
        {1, 33, 7, 7, 64, 1, 1, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}, "", "narrow: 49 columns, M a multiple of 32"},
        {1, 17, 3, 3, 120, 1, 1, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}, "Relu", "narrow: 9 columns, last row panel partial"},
        {1, 1100, 5, 5, 96, 1, 1, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}, "Clip", "narrow: two k blocks"},
        {2, 40, 5, 7, 64, 1, 1, 2, {1, 1}, {1, 1}, {0, 0, 0, 0}, "", "narrow: groups, batch 2"},
        {1, 300, 10, 10, 13, 1, 1, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}, "Relu", "wide: two k blocks, 13 rows"},
        {1, 9, 11, 13, 21, 1, 1, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}, "Clip", "wide: 143 columns (tail vector)"},
        {1, 5, 1, 3, 7, 1, 1, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}, "", "3 columns (Eigen fallback)"},
        {1, 3, 31, 29, 17, 3, 3, 1, {2, 2}, {1, 1}, {1, 0, 1, 1}, "Relu", "im2col stride 2 (first-layer shape)"},
        {1, 16, 130, 129, 9, 3, 3, 1, {2, 2}, {1, 1}, {1, 1, 1, 1}, "Clip", "im2col in blocks of output rows (last partial)"},
        {1, 6, 23, 37, 9, 3, 3, 1, {1, 1}, {1, 1}, {1, 1, 1, 1}, "Clip", "shifted rows, stride 1"},
        {1, 6, 9, 9, 33, 3, 3, 1, {1, 1}, {2, 1}, {2, 1, 2, 1}, "", "shifted rows, dilated, narrow map"},
        {1, 8, 12, 10, 12, 3, 2, 4, {1, 1}, {1, 1}, {1, 0, 1, 1}, "Relu", "grouped 3x2 kernel"},
        {1, 4, 6, 6, 5, 1, 1, 1, {2, 2}, {1, 1}, {0, 0, 0, 0}, "", "1x1 stride 2 (im2col)"},
        {1, 7, 4, 4, 8, 4, 4, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}, "", "kernel as large as the input: 1 column"},
    };
    for (const ConvCase& c : cases) {
        const std::string what = c.what;
        CAPTURE(what);
        const Tensor x = random_tensor({c.N, c.C, c.H, c.W});
        const Tensor w = random_tensor({c.M, c.C / c.group, c.KH, c.KW});
        const Tensor b = random_tensor({c.M});
        const Tensor want = naive_conv(x, w, b, c);
        Executor ex(conv_graph(c, x, w, b));
        for (int threads : {1, 3}) {
            ExecContext ctx(threads);
            CHECK(rel_diff(ex.run({x}, ctx)[0], want) < 1e-5);
            CHECK(rel_diff(ex.run({x}, ctx)[0], want) < 1e-5);  // second run: cached packed weights
        }
    }
}

TEST_CASE("fast paths: depthwise Conv (strides 1/2/3, pads, dilations, wide rows, fused clamp)") {
    const ConvCase cases[] = {
        {1, 5, 37, 41, 5, 3, 3, 5, {1, 1}, {1, 1}, {1, 1, 1, 1}, "Relu", "stride 1, 41 columns (3 vectors, tail)"},
        {2, 3, 38, 35, 3, 3, 3, 3, {2, 2}, {1, 1}, {0, 1, 1, 0}, "Clip", "stride 2, asymmetric pads, batch 2"},
        {1, 4, 17, 33, 4, 5, 5, 4, {2, 2}, {2, 2}, {4, 4, 4, 4}, "", "stride 2, 5x5 dilated 2"},
        {1, 3, 7, 7, 3, 3, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}, "Clip", "7x7 map (one masked vector per row)"},
        {1, 3, 11, 20, 3, 3, 3, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}, "Relu", "3x3: 11 output rows (6 + 5)"},
        {1, 2, 16, 18, 2, 3, 3, 2, {2, 2}, {1, 1}, {1, 1, 1, 1}, "", "3x3 stride 2: 8 output rows (6 + 2)"},
        {1, 2, 9, 20, 2, 3, 3, 2, {1, 2}, {1, 1}, {1, 1, 1, 1}, "", "row stride 1, column stride 2"},
        {1, 2, 20, 9, 2, 3, 3, 2, {2, 1}, {1, 1}, {1, 1, 1, 1}, "Relu", "row stride 2, column stride 1"},
        {1, 3, 13, 29, 3, 3, 3, 3, {3, 3}, {1, 1}, {1, 1, 1, 1}, "", "stride 3 (generic path)"},
        {1, 2, 6, 6, 2, 1, 7, 2, {1, 1}, {1, 1}, {0, 3, 0, 3}, "", "1x7 kernel"},
    };
    for (const ConvCase& c : cases) {
        const std::string what = c.what;
        CAPTURE(what);
        const Tensor x = random_tensor({c.N, c.C, c.H, c.W});
        const Tensor w = random_tensor({c.M, 1, c.KH, c.KW});
        const Tensor b = random_tensor({c.M});
        const Tensor want = naive_conv(x, w, b, c);
        Executor ex(conv_graph(c, x, w, b));
        for (int threads : {1, 3}) {
            ExecContext ctx(threads);
            CHECK(rel_diff(ex.run({x}, ctx)[0], want) < 1e-5);
        }
    }
}

TEST_CASE("fast paths: packed weights are cached only for the executor's own initializers") {
    const ConvCase c{1, 12, 7, 7, 64, 1, 1, 1, {1, 1}, {1, 1}, {0, 0, 0, 0}, "", "weights as a graph input"};
    const Tensor x = random_tensor({1, 12, 7, 7});
    const Tensor b = random_tensor({64});
    // weights fed as an input change between runs: never served from a cache
    Graph g;
    declare_input(g, "x", x.shape());
    declare_input(g, "w", {64, 12, 1, 1});
    g.initializers["b"] = b;
    g.nodes = {make_node("Conv", {"x", "w", "b"}, {"y"})};
    g.outputs = {"y"};
    Executor ex(g);
    ExecContext ctx(1);
    for (int i = 0; i < 3; ++i) {
        const Tensor w = random_tensor({64, 12, 1, 1});
        CHECK(rel_diff(ex.run(std::vector<Tensor>{x, w}, ctx)[0], naive_conv(x, w, b, c)) < 1e-5);
    }
    // executors built one after another (weights possibly at a reused address) keep their own
    for (int i = 0; i < 3; ++i) {
        const Tensor w = random_tensor({64, 12, 1, 1});
        Executor e2(conv_graph(c, x, w, b));
        CHECK(rel_diff(e2.run({x}, ctx)[0], naive_conv(x, w, b, c)) < 1e-5);
    }
}

TEST_CASE("fast paths: 2-D MaxPool matches naive loops (strides, pads, dilations, ceil_mode, wide rows)") {
    struct PoolCase {
        std::int64_t C, H, W, K;
        std::vector<std::int64_t> st, dil, pads;
        std::int64_t ceil_mode;
        const char* what;
    };
    const PoolCase cases[] = {
        {3, 111, 111, 3, {2, 2}, {1, 1}, {0, 0, 0, 0}, 0, "SqueezeNet's first pool"},
        {2, 28, 28, 3, {2, 2}, {1, 1}, {0, 0, 0, 0}, 1, "ceil_mode (last window half outside)"},
        {2, 19, 37, 3, {1, 1}, {1, 1}, {1, 1, 1, 1}, 0, "stride 1, pads"},
        {2, 20, 35, 2, {2, 2}, {2, 2}, {1, 0, 1, 1}, 0, "dilated, asymmetric pads"},
        {2, 13, 40, 3, {3, 3}, {1, 1}, {1, 1, 1, 1}, 0, "stride 3 (generic path)"},
    };
    for (const PoolCase& c : cases) {
        const std::string what = c.what;
        CAPTURE(what);
        Tensor x = random_tensor({1, c.C, c.H, c.W});
        x.data<float>()[5] = -std::numeric_limits<float>::infinity();
        const auto out_dim = [&](std::int64_t in, int i) {
            const std::int64_t span = in + c.pads[i] + c.pads[i + 2] - ((c.K - 1) * c.dil[i] + 1);
            return (c.ceil_mode ? (span + c.st[i] - 1) / c.st[i] : span / c.st[i]) + 1;
        };
        const std::int64_t OH = out_dim(c.H, 0), OW = out_dim(c.W, 1);
        Graph g;
        declare_input(g, "x", x.shape());
        Node n = make_node("MaxPool", {"x"}, {"y"});
        n.attributes["kernel_shape"] = Attribute::make_ints({c.K, c.K});
        n.attributes["strides"] = Attribute::make_ints(c.st);
        n.attributes["dilations"] = Attribute::make_ints(c.dil);
        n.attributes["pads"] = Attribute::make_ints(c.pads);
        n.attributes["ceil_mode"] = Attribute::make_int(c.ceil_mode);
        g.nodes = {n};
        g.outputs = {"y"};
        Executor ex(g);
        ExecContext ctx(1);
        const Tensor y = ex.run({x}, ctx)[0];
        REQUIRE(y.shape() == Shape{1, c.C, OH, OW});
        for (std::int64_t ch = 0; ch < c.C; ++ch)
            for (std::int64_t oh = 0; oh < OH; ++oh)
                for (std::int64_t ow = 0; ow < OW; ++ow) {
                    float best = std::numeric_limits<float>::lowest();
                    for (std::int64_t kh = 0; kh < c.K; ++kh)
                        for (std::int64_t kw = 0; kw < c.K; ++kw) {
                            const std::int64_t ih = oh * c.st[0] - c.pads[0] + kh * c.dil[0];
                            const std::int64_t iw = ow * c.st[1] - c.pads[1] + kw * c.dil[1];
                            if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                            best = std::max(best, x.data<float>()[(ch * c.H + ih) * c.W + iw]);
                        }
                    CHECK(y.data<float>()[(ch * OH + oh) * OW + ow] == best);
                }
    }
}
