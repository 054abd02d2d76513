// bpuq's SIMD conv/depthwise/GEMM (int8, int16; 1 and 2 threads) next to oneDNN's int8 convolution, and SIMD vs reference pooling/eltwise/LUT.
//
// Every benchmark first checks its output against the scalar reference once and aborts on a
// difference, so a fast wrong kernel cannot produce a number. GOPS = 2 * MACs / second.
#include <benchmark/benchmark.h>

#include <bpuq/kernels.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#if BPUQ_BENCH_HAVE_DNNL
#include <omp.h>

#include <dnnl.hpp>
#endif

using namespace bpuq;

namespace {

struct ConvShape {
    int ci, co, h, w, k, s, g;
    std::string name(int threads) const {
        return "ci" + std::to_string(ci) + "_co" + std::to_string(co) + "_h" + std::to_string(h) + "_w" + std::to_string(w) +
               "_k" + std::to_string(k) + "_s" + std::to_string(s) + "_g" + std::to_string(g) + "_t" + std::to_string(threads);
    }
    Conv2dGeometry geometry() const {
        Conv2dGeometry g_;
        g_.in_h = h;
        g_.in_w = w;
        g_.in_c = ci;
        g_.out_c = co;
        g_.kernel_h = g_.kernel_w = k;
        g_.stride_h = g_.stride_w = s;
        g_.pad_top = g_.pad_left = g_.pad_bottom = g_.pad_right = k / 2;
        g_.groups = g;
        return g_;
    }
};

const ConvShape kShapes[] = {
    {64, 64, 56, 56, 3, 1, 1},   {128, 128, 28, 28, 3, 1, 1}, {256, 256, 14, 14, 3, 1, 1}, {512, 512, 7, 7, 3, 1, 1},
    {24, 144, 56, 56, 1, 1, 1},  {160, 960, 7, 7, 1, 1, 1},   {144, 144, 56, 56, 3, 1, 144}, {960, 960, 7, 7, 3, 1, 960},
};

/// Weights like a trained, per-channel symmetric int8 layer: roughly normal, the largest
/// magnitude of each channel at 127 (uniform [-127, 127] would be a worst case no trained
/// layer shows, and would push int16 layers onto the int64 accumulation path).
std::vector<std::int8_t> trained_like_weights(std::size_t n, std::uint32_t seed) {
    std::mt19937 g(seed);
    std::normal_distribution<float> d(0.0f, 127.0f / 4.0f);
    std::vector<std::int8_t> w(n);
    for (auto& v : w) v = static_cast<std::int8_t>(std::max(-127.0f, std::min(127.0f, std::round(d(g)))));
    return w;
}

template <class T>
std::vector<T> activations(std::size_t n, std::uint32_t seed) {
    std::mt19937 g(seed);
    std::uniform_int_distribution<int> d(std::numeric_limits<T>::min(), std::numeric_limits<T>::max());
    std::vector<T> v(n);
    for (auto& x : v) x = static_cast<T>(d(g));
    return v;
}

template <class TIn>
void BM_conv(benchmark::State& state, ConvShape shape, int threads) {
    const Conv2dGeometry g = shape.geometry();
    const auto input = activations<TIn>(static_cast<std::size_t>(g.input_size()), 1);
    const auto weights = trained_like_weights(static_cast<std::size_t>(g.weight_size()), 2);
    const std::int32_t zp_in = sizeof(TIn) == 1 ? -3 : 0;
    std::vector<std::int32_t> bias(static_cast<std::size_t>(g.out_c), 1000);
    std::vector<QuantizedMultiplier> mult(static_cast<std::size_t>(g.out_c));
    const double m = 1.0 / (std::sqrt(double(g.kernel_h * g.kernel_w * g.in_c_per_group())) * 30.0 * 70.0 *
                            (sizeof(TIn) == 2 ? 256.0 : 1.0)) * (sizeof(TIn) == 2 ? 8000.0 : 40.0);
    for (std::size_t c = 0; c < mult.size(); ++c) mult[c] = quantize_multiplier(m * (1.0 + 0.01 * double(c % 7)));
    Requantization rq;
    rq.bias = bias.data();
    rq.multipliers = mult.data();
    rq.zero_point = sizeof(TIn) == 1 ? 2 : 0;
    rq.lo = std::numeric_limits<TIn>::min();
    rq.hi = std::numeric_limits<TIn>::max();
    std::vector<TIn> out(static_cast<std::size_t>(g.output_size())), want(out.size());
    const simd::PackedConvWeights packed = simd::PackedConvWeights::pack(g, weights.data());  // at "model load"
    const KernelContext ctx = KernelContext::with_threads(threads);
    simd::conv2d(ctx, g, input.data(), zp_in, packed, rq, out.data());
    reference::conv2d(g, input.data(), zp_in, weights.data(), rq, want.data());
    if (out != want) {
        std::fprintf(stderr, "bench_conv: %s differs from the reference\n", g.to_string().c_str());
        std::abort();
    }
    for (auto _ : state) {
        simd::conv2d(ctx, g, input.data(), zp_in, packed, rq, out.data());
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
    state.counters["GOPS"] = benchmark::Counter(2.0 * double(g.macs()) * double(state.iterations()) / 1e9,
                                                benchmark::Counter::kIsRate);
    state.SetLabel(simd::level_name<simd::default_arch>());
}

template <class TIn>
void BM_gemm(benchmark::State& state, int mnk, int threads) {
    GemmGeometry gg;
    gg.m = gg.n = gg.k = mnk;
    const auto a = activations<TIn>(std::size_t(gg.m) * gg.k, 3);
    const auto b = trained_like_weights(std::size_t(gg.n) * gg.k, 4);
    std::vector<QuantizedMultiplier> mult(static_cast<std::size_t>(gg.n),
                                          quantize_multiplier(sizeof(TIn) == 2 ? 1e-5 : 2e-4));
    Requantization rq;
    rq.multipliers = mult.data();
    rq.lo = std::numeric_limits<TIn>::min();
    rq.hi = std::numeric_limits<TIn>::max();
    std::vector<TIn> c(std::size_t(gg.m) * gg.n), want(c.size());
    const simd::PackedConvWeights packed = simd::pack_gemm_weights(gg.n, gg.k, b.data());
    const KernelContext ctx = KernelContext::with_threads(threads);
    simd::gemm(ctx, gg, a.data(), 0, packed, rq, c.data());
    reference::gemm(gg, a.data(), 0, b.data(), 0, rq, want.data());
    if (c != want) {
        std::fprintf(stderr, "bench_gemm: differs from the reference\n");
        std::abort();
    }
    for (auto _ : state) {
        simd::gemm(ctx, gg, a.data(), 0, packed, rq, c.data());
        benchmark::DoNotOptimize(c.data());
        benchmark::ClobberMemory();
    }
    state.counters["GOPS"] = benchmark::Counter(2.0 * double(gg.macs()) * double(state.iterations()) / 1e9,
                                                benchmark::Counter::kIsRate);
}

#if BPUQ_BENCH_HAVE_DNNL
/// oneDNN 2.6 int8 forward-inference convolution (u8 source, s8 weights, s8 destination,
/// per-channel output scales), with the layouts it prefers ("any"); inputs are reordered once
/// outside the timed loop. Not bit-exact with bpuq (float scales, its own rounding), so its
/// output is only checked for shape; the reference check applies to bpuq's kernels.
void BM_onednn_conv_i8(benchmark::State& state, ConvShape shape, int threads) {
    using namespace dnnl;
    omp_set_num_threads(threads);
    engine eng(engine::kind::cpu, 0);
    stream strm(eng);
    const Conv2dGeometry g = shape.geometry();
    const memory::dims src_d{1, g.in_c, g.in_h, g.in_w}, dst_d{1, g.out_c, g.out_h(), g.out_w()};
    const memory::dims w_d = g.groups == 1 ? memory::dims{g.out_c, g.in_c, g.kernel_h, g.kernel_w}
                                           : memory::dims{g.groups, g.out_c / g.groups, g.in_c / g.groups, g.kernel_h, g.kernel_w};
    const memory::dims strides{g.stride_h, g.stride_w}, pad_l{g.pad_top, g.pad_left}, pad_r{g.pad_bottom, g.pad_right};
    auto any = [](const memory::dims& d, memory::data_type t) { return memory::desc(d, t, memory::format_tag::any); };
    convolution_forward::desc desc(prop_kind::forward_inference, algorithm::convolution_direct,
                                   any(src_d, memory::data_type::u8), any(w_d, memory::data_type::s8),
                                   any(dst_d, memory::data_type::s8), strides, pad_l, pad_r);
    primitive_attr attr;
    std::vector<float> scales(static_cast<std::size_t>(g.out_c), 1.0f / 4096.0f);
    attr.set_output_scales(1 << 1, scales);
    convolution_forward::primitive_desc pd(desc, attr, eng);
    memory src(pd.src_desc(), eng), wei(pd.weights_desc(), eng), dst(pd.dst_desc(), eng);
    // fill through plain layouts and a reorder, as a framework would at load time
    memory src_plain({src_d, memory::data_type::u8, memory::format_tag::nhwc}, eng);
    memory w_plain({w_d, memory::data_type::s8, g.groups == 1 ? memory::format_tag::oihw : memory::format_tag::goihw}, eng);
    const auto x = activations<std::uint8_t>(static_cast<std::size_t>(g.input_size()), 5);
    const auto wv = trained_like_weights(static_cast<std::size_t>(g.weight_size()), 6);
    std::memcpy(src_plain.get_data_handle(), x.data(), x.size());
    std::memcpy(w_plain.get_data_handle(), wv.data(), wv.size());
    reorder(src_plain, src).execute(strm, src_plain, src);
    reorder(w_plain, wei).execute(strm, w_plain, wei);
    convolution_forward conv(pd);
    const std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}};
    conv.execute(strm, args);
    strm.wait();
    for (auto _ : state) {
        conv.execute(strm, args);
        strm.wait();
    }
    state.counters["GOPS"] = benchmark::Counter(2.0 * double(g.macs()) * double(state.iterations()) / 1e9,
                                                benchmark::Counter::kIsRate);
    state.SetLabel(pd.impl_info_str());
}
#endif

/// Pooling, eltwise, int8/int16 LUTs and bilinear resize: the SIMD kernel (simd = true) or the scalar reference, on MobileNet-
/// like sizes; the SIMD output is checked against the reference first.
void BM_small_op(benchmark::State& state, int which, bool simd) {
    const auto x = activations<std::int8_t>(56 * 56 * 64, 7), y = activations<std::int8_t>(56 * 56 * 64, 8);
    std::vector<std::int8_t> out(56 * 56 * 64), want(out.size());
    Pool2dGeometry g;
    g.in_h = g.in_w = 56;
    g.channels = 64;
    g.kernel_h = g.kernel_w = 3;
    g.stride_h = g.stride_w = 2;
    g.pad_top = g.pad_left = g.pad_bottom = g.pad_right = 1;
    const AverageRescale avg(0.9, 9, -3, 2, -128, 127), gap(0.9, 56 * 56, -3, 2, -128, 127);
    const EltwiseParams add = EltwiseParams::make(EltwiseOp::add, 0.02f, -3, 0.03f, 5, 0.04f, 1, -128, 127);
    const auto lut = LutInt8<std::int8_t>::build([](float v) { return std::tanh(v); }, 0.03f, -3, 1.0f / 128, 0, -128, 127);
    const std::int64_t n = std::int64_t(x.size());
    const ResizeAxis up(28, 56, ResizeCoordinates::half_pixel);  // 2x bilinear upsampling of 28x28x64
    const auto x16 = activations<std::int16_t>(56 * 56 * 64, 9);
    std::vector<std::int16_t> out16(x16.size()), want16(x16.size());
    const auto lut16 = LutInt16<std::int16_t>::build([](float v) { return std::tanh(v); }, 1.0f / 4096, 1.0f / 32768, 0, -32768, 32767);
    auto run = [&](bool use_simd, std::int8_t* o) {
        if (which == 6) {  // int16 -> int16 interpolated table
            std::int16_t* o16 = o == out.data() ? out16.data() : want16.data();
            use_simd ? simd::apply_lut(x16.data(), n, lut16, o16) : reference::apply_lut(x16.data(), n, lut16, o16);
            return;
        }
        switch (which) {
            case 0: use_simd ? simd::max_pool2d(g, x.data(), o) : reference::max_pool2d(g, x.data(), o); break;
            case 1: use_simd ? simd::avg_pool2d(g, x.data(), false, avg, o) : reference::avg_pool2d(g, x.data(), false, avg, o); break;
            case 2: use_simd ? simd::global_avg_pool(x.data(), 1, 56, 56, 64, gap, o) : reference::global_avg_pool(x.data(), 1, 56, 56, 64, gap, o); break;
            case 3: use_simd ? simd::eltwise(x.data(), y.data(), n, n, add, o) : reference::eltwise(x.data(), y.data(), n, n, add, o); break;
            case 4: use_simd ? simd::apply_lut(x.data(), n, lut, o) : reference::apply_lut(x.data(), n, lut, o); break;
            default:
                use_simd ? simd::resize_bilinear(x.data(), 1, 28, 28, 64, -3, up, up, o)
                         : reference::resize_bilinear(x.data(), 1, 28, 28, 64, -3, up, up, o);
                break;
        }
    };
    run(true, out.data());
    run(false, want.data());
    if (out != want || out16 != want16) {
        std::fprintf(stderr, "bench_conv: small op %d differs from the reference\n", which);
        std::abort();
    }
    for (auto _ : state) {
        run(simd, out.data());
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
    }
}

void register_all() {
    const char* small_ops[] = {"maxpool3x3s2_56x56x64", "avgpool3x3s2_56x56x64", "globalavg_56x56x64", "add_200704", "lut_200704",
                               "resize_bilinear_28x28x64_to_56x56", "lut16_200704"};
    for (int i = 0; i < 7; ++i)
        for (bool simd : {false, true})
            benchmark::RegisterBenchmark((std::string(simd ? "BM_simd_" : "BM_ref_") + small_ops[i]).c_str(), BM_small_op, i, simd)
                ->Unit(benchmark::kMicrosecond);
    for (int t : {1, 2}) {
        for (const ConvShape& s : kShapes) {
            benchmark::RegisterBenchmark(("BM_conv_i8/" + s.name(t)).c_str(), BM_conv<std::int8_t>, s, t)
                ->Unit(benchmark::kMicrosecond)
                ->UseRealTime();
            benchmark::RegisterBenchmark(("BM_conv_i16/" + s.name(t)).c_str(), BM_conv<std::int16_t>, s, t)
                ->Unit(benchmark::kMicrosecond)
                ->UseRealTime();
#if BPUQ_BENCH_HAVE_DNNL
            benchmark::RegisterBenchmark(("BM_onednn_conv_i8/" + s.name(t)).c_str(), BM_onednn_conv_i8, s, t)
                ->Unit(benchmark::kMicrosecond)
                ->UseRealTime();
#endif
        }
        const std::string gemm_name = "m512_n512_k512_t" + std::to_string(t);
        benchmark::RegisterBenchmark(("BM_gemm_i8/" + gemm_name).c_str(), BM_gemm<std::int8_t>, 512, t)
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
        benchmark::RegisterBenchmark(("BM_gemm_i16/" + gemm_name).c_str(), BM_gemm<std::int16_t>, 512, t)
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
    }
}

}  // namespace

int main(int argc, char** argv) {
    register_all();
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
