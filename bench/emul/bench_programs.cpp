// Latency of the integer programs of the shared models, one sample, 1 and 2 threads. Each program
// is made in-process (max calibration on the 8 reference samples, which does not change the
// work), checked once against the reference kernels, then timed.
#include <benchmark/benchmark.h>

#include <bpuq/calib/collect.hpp>
#include <bpuq/calib/weights.hpp>
#include <bpuq/emul/executor.hpp>
#include <bpuq/emul/lower.hpp>
#include <bpuq/graph/passes.hpp>
#include <bpuq/io/npy.hpp>
#include <bpuq/onnx/import.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

namespace {

using namespace bpuq;

std::string data_dir() {
    const char* e = std::getenv("BPUQ_DATA_DIR");
    return e && *e ? e : BPUQ_DEFAULT_DATA_DIR;
}

struct Prepared {
    emul::Program program;
    Tensor input;
};

/// Calibrates (max) on the reference inputs and lowers the model; cached per model.
const Prepared* prepare(const std::string& model, const std::string& reference) {
    static std::map<std::string, std::unique_ptr<Prepared>> cache;
    auto it = cache.find(model);
    if (it != cache.end()) return it->second.get();
    const std::string path = data_dir() + "/" + model;
    if (!std::filesystem::exists(path)) return nullptr;
    graph::Graph g = onnx_io::load_model(path);
    graph::optimize(g);
    const calib::QuantPlan plan = calib::make_quant_plan(g, config::ConvertConfig{});
    const Tensor all = io::read_npy(data_dir() + "/reference/" + reference + "/inputs.npy");
    const std::string dir = (std::filesystem::temp_directory_path() / ("bpuq_bench_" + reference)).string();
    std::filesystem::create_directories(dir);
    Shape one = all.shape();
    one[0] = 1;
    const std::int64_t per = all.numel() / all.dim(0);
    for (std::int64_t i = 0; i < all.dim(0); ++i) {
        Tensor s(DType::float32, one);
        std::memcpy(s.raw(), all.data<float>() + i * per, std::size_t(per) * 4);
        io::write_npy(dir + "/s" + std::to_string(i) + ".npy", s);
    }
    io::CalibrationSet data({{g.inputs[0], dir, "float32", one}});
    graph::Executor fexec{graph::Graph(g)};
    const auto stats = calib::collect_statistics(fexec, data, plan);
    auto p = std::make_unique<Prepared>();
    p->program = emul::lower_to_program(g, plan, calib::choose_qparams(stats, plan, {}), calib::quantize_weights(g, plan));
    p->input = data.load(0, 0);
    std::filesystem::remove_all(dir);
    // a fast wrong program must not look good: SIMD == reference once
    const auto a = emul::ProgramExecutor(p->program, {1, true}).run({p->input});
    const auto b = emul::ProgramExecutor(p->program, {1, false}).run({p->input});
    if (a[0].nbytes() != b[0].nbytes() || std::memcmp(a[0].raw(), b[0].raw(), a[0].nbytes()) != 0) {
        std::fprintf(stderr, "bench: %s SIMD and reference programs differ\n", model.c_str());
        std::abort();
    }
    return (cache[model] = std::move(p)).get();
}

void BM_program(benchmark::State& state, const std::string& model, const std::string& reference) {
    const Prepared* p = prepare(model, reference);
    if (!p) {
        state.SkipWithError("model not found (set BPUQ_DATA_DIR)");
        return;
    }
    emul::ProgramExecutor exec(p->program, {static_cast<int>(state.range(0)), true});
    for (auto _ : state) benchmark::DoNotOptimize(exec.run({p->input}));
}

}  // namespace

BENCHMARK_CAPTURE(BM_program, resnet8, "cifar10/models/resnet8_fp32.onnx", "resnet8_fp32")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_program, squeezenet1_1, "imagenet/models/squeezenet1.1_fp32.onnx", "squeezenet1.1_fp32")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_program, mobilenet_v1_025_128, "imagenet/models/mobilenet_v1_0.25_128_fp32.onnx", "mobilenet_v1_0.25_128_fp32")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_program, mobilenet_v2_224, "imagenet/models/mobilenet_v2_1.0_224_fp32.onnx", "mobilenet_v2_1.0_224_fp32")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

BENCHMARK_MAIN();
