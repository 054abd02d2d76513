// The accuracy optimizer on ResNet-8: the search runs its steps in the seed document's order,
// keeps the best trial, its chosen config reproduces its number through a plain conversion, the
// top-1 target is measured on the labelled set, and bad targets are named.
#include <doctest/doctest.h>

#include <bpuq/flow/optimize.hpp>

#include <filesystem>
#include <sstream>

#include "reference_samples.hpp"

using namespace bpuq;
namespace fs = std::filesystem;

namespace {

struct Work {
    fs::path dir;
    std::string cal;
    nlohmann::json config;
    explicit Work(const std::string& name) : dir(fs::temp_directory_path() / ("bpuq_optimize_" + name)) {
        fs::remove_all(dir);
        fs::create_directories(dir);
        cal = bpuq_test::write_reference_samples("resnet8_fp32", dir / "cal");
        config["model_parameters"] = {{"onnx_model", bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx"},
                                      {"output_model_file_prefix", "r8"},
                                      {"working_dir", (dir / "out").string()}};
        config["input_parameters"] = {{"input_type_train", "rgb"}, {"input_type_rt", "rgb"}};
        config["calibration_parameters"] = {{"cal_data_dir", cal}, {"calibration_type", "max"}};
    }
    ~Work() { fs::remove_all(dir); }
};

bool have_resnet8() {
    if (bpuq_test::path_exists(bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx")) return true;
    MESSAGE("skipped: ResNet-8 not under " << bpuq_test::data_dir());
    return false;
}

double output_cosine(const flow::ConvertResult& r) { return r.report.at("outputs").at(0).at("cosine_similarity").get<double>(); }

}  // namespace

TEST_CASE("optimizer: an unreachable cosine target walks every step and keeps the best, reproducibly") {
    if (!have_resnet8()) return;
    Work w("cosine");
    flow::OptimizeTarget target;
    target.cosine = 1.0;  // never reached: every step runs
    flow::OptimizeOptions opt;
    opt.work_dir = (w.dir / "work").string();
    opt.threads = 2;
    opt.max_int16_tries = 2;
    opt.max_cpu = 1;
    opt.sensitivity_samples = 4;
    std::ostringstream log;
    const flow::OptimizeResult r = flow::optimize(w.config, "r8.yaml", w.dir.string(), target, opt, log);
    CHECK_FALSE(r.reached);
    CHECK(log.str().find("target NOT reached") != std::string::npos);
    // the order of the seed document
    std::vector<std::string> steps;
    for (const auto& t : r.trials)
        if (steps.empty() || steps.back() != t.step) steps.push_back(t.step);
    CHECK(steps == std::vector<std::string>{"baseline", "calibration", "options", "int16", "cpu"});
    // the best trial is the best measured, and exactly one is marked kept
    std::size_t kept = 0;
    for (const auto& t : r.trials) {
        kept += t.kept;
        if (t.error.empty()) CHECK(t.cosine <= r.trials[r.best].cosine);
        if (t.step == "int16" && t.error.empty()) CHECK(t.int16_nodes >= 1);
        if (t.step == "cpu" && t.error.empty()) CHECK(t.cpu_nodes == 1);
    }
    CHECK(kept == 1);
    CHECK(r.trials[r.best].kept);
    // the chosen config, converted again, gives the same output cosine
    nlohmann::json chosen = r.trials[r.best].config;
    chosen["model_parameters"]["working_dir"] = (w.dir / "again").string();
    std::ostringstream console;
    const auto again = flow::convert(config::parse_convert_config(chosen, "chosen.yaml", w.dir.string()), console, {2, 50});
    CHECK(output_cosine(again) == doctest::Approx(r.trials[r.best].cosine).epsilon(1e-12));
    CHECK(r.report()["trials"].size() == r.trials.size());
}

TEST_CASE("optimizer: a reachable target is met by the shortest int16 prefix found, and the cheapest meeting trial wins") {
    if (!have_resnet8()) return;
    Work w("int16");
    flow::OptimizeOptions opt;
    opt.work_dir = (w.dir / "work").string();
    opt.threads = 2;
    opt.max_int16 = 4;
    opt.max_int16_tries = 1;  // the whole plan only
    opt.max_cpu = 0;
    opt.sensitivity_samples = 8;
    flow::OptimizeTarget target;
    target.cosine = 1.0;
    std::ostringstream log1;
    const flow::OptimizeResult first = flow::optimize(w.config, "r8.yaml", w.dir.string(), target, opt, log1);
    double before = 0, whole_plan = 0;
    std::size_t plan_nodes = 0;
    for (const auto& t : first.trials) {
        if (t.step != "int16") before = std::max(before, t.cosine);
        else {
            whole_plan = t.cosine;
            plan_nodes = t.int16_nodes;
        }
    }
    MESSAGE("best before int16 " << before << ", the whole plan (" << plan_nodes << " nodes) " << whole_plan);
    REQUIRE(plan_nodes >= 2);
    REQUIRE(whole_plan > before);  // else this model cannot show the int16 step reaching a target
    // the target is what the whole plan reaches: the search must meet it, with at most that many nodes
    target.cosine = whole_plan - 1e-9;  // the evaluation sums samples in completion order: last-bit differences
    opt.max_int16_tries = 4;
    opt.work_dir = (w.dir / "work2").string();
    std::ostringstream log2;
    const flow::OptimizeResult r = flow::optimize(w.config, "r8.yaml", w.dir.string(), target, opt, log2);
    CHECK(r.reached);
    const flow::Trial& best = r.trials[r.best];
    CHECK(best.meets);
    CHECK(best.step == "int16");
    CHECK(best.int16_nodes <= plan_nodes);
    std::size_t int16_trials = 0;
    for (const auto& t : r.trials) {
        int16_trials += t.step == "int16";
        if (t.meets) CHECK(t.int16_nodes + t.cpu_nodes >= best.int16_nodes + best.cpu_nodes);
        CHECK(t.step != "cpu");  // reached before step 4
    }
    CHECK(int16_trials >= 1);
    CHECK(int16_trials <= 4);
}

TEST_CASE("optimizer: a top-1 target is measured on the labelled set against the float model") {
    if (!have_resnet8()) return;
    Work w("top1");
    // labels: the float model's own answers, so float top-1 is 100% by construction
    const graph::Graph g = onnx_io::load_model(bpuq_test::data_dir() + "/cifar10/models/resnet8_fp32.onnx");
    graph::Executor exec{graph::Graph(g)};
    std::vector<std::int64_t> labels;
    for (int i = 0; i < 8; ++i) {
        const Tensor y = exec.run({io::read_npy(w.cal + "/s" + std::to_string(i) + ".npy")}, graph::ExecContext(1))[0];
        labels.push_back(std::int64_t(std::max_element(y.data<float>(), y.data<float>() + y.numel()) - y.data<float>()));
    }
    const std::string label_file = (w.dir / "labels.npy").string();
    io::write_npy(label_file, Tensor::from_vector<std::int64_t>({8}, labels));
    flow::OptimizeTarget target;
    target.eval_dir = w.cal;
    target.eval_labels = label_file;
    target.max_top1_loss = 100.0;  // any result is within the allowed loss: the baseline is chosen
    flow::OptimizeOptions opt;
    opt.work_dir = (w.dir / "work").string();
    opt.threads = 2;
    std::ostringstream log;
    const flow::OptimizeResult r = flow::optimize(w.config, "r8.yaml", w.dir.string(), target, opt, log);
    CHECK(r.reached);
    CHECK(r.float_top1 == doctest::Approx(100.0));
    REQUIRE(r.trials.size() == 1);
    CHECK(r.trials[0].top1 >= 0.0);
    CHECK(r.trials[0].top1 <= 100.0);

    // a label file that does not match the samples is named
    io::write_npy(label_file, Tensor::from_vector<std::int64_t>({3}, {1, 2, 3}));
    CHECK_THROWS_WITH(flow::optimize(w.config, "r8.yaml", w.dir.string(), target, opt, log), doctest::Contains("labels.npy"));
}

TEST_CASE("optimizer: bad targets are errors") {
    nlohmann::json j;
    flow::OptimizeOptions opt;
    std::ostringstream log;
    CHECK_THROWS_WITH(flow::optimize(j, "x.yaml", ".", flow::OptimizeTarget{}, opt, log), doctest::Contains("give a target"));
    flow::OptimizeTarget t;
    t.cosine = 1.5;
    CHECK_THROWS_WITH(flow::optimize(j, "x.yaml", ".", t, opt, log), doctest::Contains("above 1"));
}
