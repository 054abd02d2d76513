// All-node sensitivity of MobileNet V2 (issue #6's speed goal: 10 samples in under 30 s on 2
// cores). BM_debug_sensitivity: the debug tool as bpuq_debug runs it — a fresh DebugSession
// (float run of every sample) plus one experiment per node, each re-running only what is
// downstream of the node. BM_debug_sensitivity_full_forward: the naive way, a full forward pass
// of the calibrated model per node and sample, for the ratio (tests/debug/test_debug_tool.cpp
// checks that both give the same numbers). Both report the peak resident memory.
#include <benchmark/benchmark.h>

#include <bpuq/calib/fake_quant.hpp>
#include <bpuq/debug/sensitivity.hpp>
#include <bpuq/flow/convert.hpp>

#include <sys/resource.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <sstream>

#include "support/datasets.hpp"

namespace {
namespace fs = std::filesystem;
using namespace bpuq;

std::string data_dir() {
    const char* env = std::getenv("BPUQ_DATA_DIR");
    return env && *env ? env : BPUQ_DEFAULT_DATA_DIR;
}

double peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) / 1024.0;
}

/// MobileNet V2 converted (max calibration) on the first 10 images of the ImageNet calibration
/// split, with the calibration data dumped: the inputs of bpuq_debug. Made once per process.
struct Fixture {
    fs::path dir;
    std::unique_ptr<debug::CalibratedModel> model;
    std::unique_ptr<io::CalibrationSet> data;
    std::string error;

    Fixture() {
        try {
            dir = fs::temp_directory_path() / "bpuq_bench_debug";
            fs::remove_all(dir);
            fs::create_directories(dir / "cal");
            const auto recipe = bpuq_driver::recipe_by_name("mobilenet_v2");
            const auto samples = bpuq_driver::list_split(recipe, data_dir(), "calibration");
            const bpuq_driver::SampleLoader loader(recipe, data_dir());
            for (std::size_t i = 0; i < 10; ++i) {
                char name[32];
                std::snprintf(name, sizeof name, "%03zu.npy", i);
                io::write_npy((dir / "cal" / name).string(), loader.tensor(samples[i]));
            }
            nlohmann::json j;
            j["model_parameters"] = {{"onnx_model", data_dir() + "/imagenet/models/mobilenet_v2_1.0_224_fp32.onnx"},
                                     {"output_model_file_prefix", "mv2"},
                                     {"working_dir", (dir / "out").string()},
                                     {"debug_mode", "dump_calibration_data"}};
            j["input_parameters"] = {{"input_type_train", "rgb"}, {"input_type_rt", "rgb"}, {"norm_type", "data_mean_and_scale"},
                                     {"mean_value", "128"}, {"scale_value", "0.0078125"}};
            j["calibration_parameters"] = {{"cal_data_dir", (dir / "cal").string()}, {"calibration_type", "max"}};
            std::ostringstream log;
            flow::convert(config::parse_convert_config(j, "bench.yaml"), log, {2, 2});
            model = std::make_unique<debug::CalibratedModel>(onnx_io::load_model((dir / "out" / "mv2_calibrated_model.onnx").string()));
            data = std::make_unique<io::CalibrationSet>(debug::open_debug_data((dir / "out" / "calibration_data").string(), model->graph()));
        } catch (const std::exception& e) {
            error = e.what();
        }
    }
    ~Fixture() { fs::remove_all(dir); }
};

Fixture& fixture() {
    static Fixture f;
    return f;
}

void BM_debug_sensitivity(benchmark::State& state) {
    Fixture& f = fixture();
    if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
    debug::DebugOptions opt;
    opt.data_num = std::size_t(state.range(0));
    opt.threads = int(state.range(1));
    std::size_t nodes = 0;
    for (auto _ : state) {
        const debug::DebugSession session(*f.model, *f.data, opt);
        const auto rows = debug::node_sensitivity(session, debug::NodeType::node);
        nodes = rows.size();
        benchmark::DoNotOptimize(rows.data());
    }
    state.counters["nodes"] = double(nodes);
    state.counters["samples"] = double(opt.data_num);
    state.counters["peak_rss_MB"] = peak_rss_mb();
}

/// The naive way: per node, a copy of the calibrated model with only that node's Calibration
/// nodes on, run in full on every sample.
void BM_debug_sensitivity_full_forward(benchmark::State& state) {
    Fixture& f = fixture();
    if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
    const std::size_t samples = std::size_t(state.range(0));
    const int threads = int(state.range(1));
    const auto& model = *f.model;
    for (auto _ : state) {
        graph::Graph off = model.graph();
        calib::set_calibration_enabled(off, {}, false, true);
        const graph::Executor ref{graph::Graph(off)};
        std::vector<Tensor> reference(samples);
        calib::for_each_sample(samples, threads, [&](int, std::size_t s, const graph::ExecContext& ctx) {
            reference[s] = ref.run(f.data->load_sample(s), ctx)[0];
        });
        std::vector<double> cosine(model.nodes().size());
        for (std::size_t n = 0; n < model.nodes().size(); ++n) {
            graph::Graph g = off;
            std::set<std::string> on;
            for (std::size_t c : model.nodes()[n].calibrations) on.insert(model.calibrations()[c].name);
            calib::set_calibration_enabled(g, on, true);
            const graph::Executor exec{std::move(g)};
            std::vector<double> per(samples);
            calib::for_each_sample(samples, threads, [&](int, std::size_t s, const graph::ExecContext& ctx) {
                per[s] = compare(reference[s], exec.run(f.data->load_sample(s), ctx)[0]).cosine;
            });
            for (double c : per) cosine[n] += c / double(samples);
        }
        benchmark::DoNotOptimize(cosine.data());
    }
    state.counters["nodes"] = double(model.nodes().size());
    state.counters["samples"] = double(samples);
    state.counters["peak_rss_MB"] = peak_rss_mb();
}

}  // namespace

BENCHMARK(BM_debug_sensitivity)->ArgNames({"samples", "threads"})->Args({1, 1})->Args({1, 2})->Args({10, 1})->Args({10, 2})
    ->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();
BENCHMARK(BM_debug_sensitivity_full_forward)->ArgNames({"samples", "threads"})->Args({1, 1})->Args({10, 2})
    ->Unit(benchmark::kSecond)->Iterations(1)->UseRealTime();

BENCHMARK_MAIN();
