// Whole-model latency of the float executor on the real models, one sample, single thread
// by default (--benchmark_filter picks models; BPUQ_BENCH_THREADS sets the thread count).
// Each benchmark first checks its output against ONNX Runtime's reference output so that
// a fast but wrong executor cannot look good.
#include <benchmark/benchmark.h>

#include <bpuq/io/npy.hpp>
#include <bpuq/onnx.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

namespace {

std::string data_dir() {
    const char* env = std::getenv("BPUQ_DATA_DIR");
    return env && *env ? env : BPUQ_DEFAULT_DATA_DIR;
}
int bench_threads() {
    const char* env = std::getenv("BPUQ_BENCH_THREADS");
    return env && *env ? std::atoi(env) : 1;
}

void run_model(benchmark::State& state, const std::string& rel, const std::string& ref, bool optimize) {
    const std::string dir = data_dir();
    bpuq::graph::Graph g = bpuq::onnx_io::load_model(dir + "/" + rel);
    if (optimize) bpuq::graph::optimize(g);
    auto ex = std::make_unique<bpuq::graph::Executor>(std::move(g));
    bpuq::graph::ExecContext ctx(bench_threads());
    bpuq::Tensor x, want;
    if (!ref.empty()) {
        const bpuq::Tensor inputs = bpuq::io::read_npy(dir + "/reference/" + ref + "/inputs.npy");
        const bpuq::Tensor outputs = bpuq::io::read_npy(dir + "/reference/" + ref + "/outputs.npy");
        bpuq::Shape s = inputs.shape();
        s[0] = 1;
        x = bpuq::Tensor(bpuq::DType::float32, s);
        std::copy(inputs.data<float>(), inputs.data<float>() + x.numel(), x.data<float>());
        want = outputs;
    } else {
        x = bpuq::onnx_io::read_tensor_proto_file(dir + "/mnist/mnist-8_test_data/test_data_set_0/input_0.pb");
        want = bpuq::onnx_io::read_tensor_proto_file(dir + "/mnist/mnist-8_test_data/test_data_set_0/output_0.pb");
    }
    const std::vector<bpuq::Tensor> in = {x};
    const bpuq::Tensor y = ex->run(in, ctx)[0];
    double max_abs = 0, range = 0;
    for (std::int64_t i = 0; i < y.numel(); ++i) {
        max_abs = std::max(max_abs, std::fabs(double(y.data<float>()[i]) - want.data<float>()[i]));
        range = std::max(range, std::fabs(double(want.data<float>()[i])));
    }
    if (max_abs > 1e-4 * std::max(range, 1e-6)) {
        state.SkipWithError("output differs from the reference");
        return;
    }
    for (auto _ : state) {
        auto out = ex->run(in, ctx);
        benchmark::DoNotOptimize(out[0].raw());
    }
    state.counters["threads"] = ctx.threads();
}

// With --benchmark_repetitions, "min" is the fastest repetition: on a shared, loaded machine it
// is the closest to an undisturbed run, as ort_bench.js's min_ms is for ONNX Runtime.
double fastest(const std::vector<double>& v) { return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end()); }

#define BPUQ_MODEL_BENCH(fn, rel, ref)                                                                   \
    void fn(benchmark::State& s) { run_model(s, rel, ref, false); }                                      \
    void fn##_optimized(benchmark::State& s) { run_model(s, rel, ref, true); }                           \
    BENCHMARK(fn)->Unit(benchmark::kMillisecond)->UseRealTime()->ComputeStatistics("min", fastest);      \
    BENCHMARK(fn##_optimized)->Unit(benchmark::kMillisecond)->UseRealTime()->ComputeStatistics("min", fastest);

BPUQ_MODEL_BENCH(BM_mnist8, "mnist/mnist-8.onnx", "")
BPUQ_MODEL_BENCH(BM_resnet8, "cifar10/models/resnet8_fp32.onnx", "resnet8_fp32")
BPUQ_MODEL_BENCH(BM_squeezenet11, "imagenet/models/squeezenet1.1_fp32.onnx", "squeezenet1.1_fp32")
BPUQ_MODEL_BENCH(BM_mobilenet_v1_025_128, "imagenet/models/mobilenet_v1_0.25_128_fp32.onnx", "mobilenet_v1_0.25_128_fp32")
BPUQ_MODEL_BENCH(BM_mobilenet_v2_224, "imagenet/models/mobilenet_v2_1.0_224_fp32.onnx", "mobilenet_v2_1.0_224_fp32")

}  // namespace

BENCHMARK_MAIN();
