// The accuracy debug tool on real calibrated models: cached re-runs equal full runs, the
// sensitivity ranking holds on held-out samples with an independent executor, the analyses agree
// with each other, the report is complete, and bad input is named.
#include <doctest/doctest.h>

#include <bpuq/calib/fake_quant.hpp>
#include <bpuq/debug/int16_plan.hpp>
#include <bpuq/debug/report.hpp>
#include <bpuq/flow/convert.hpp>

#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

#include "reference_samples.hpp"

using namespace bpuq;
namespace fs = std::filesystem;

namespace {

/// A model converted by bpuq_convert with its calibration data dumped: what bpuq_debug reads.
struct Converted {
    fs::path dir;
    std::string calibrated, data;
    ~Converted() {
        if (!dir.empty()) fs::remove_all(dir);
    }
};

bool have(const std::string& rel) {
    if (bpuq_test::path_exists(bpuq_test::data_dir() + "/" + rel)) return true;
    MESSAGE("skipped: " << rel << " not under " << bpuq_test::data_dir());
    return false;
}

std::unique_ptr<Converted> convert_for_debug(const std::string& name, const std::string& model, const std::string& reference,
                                             float a, float b, const nlohmann::json& input_parameters) {
    auto c = std::make_unique<Converted>();
    c->dir = fs::temp_directory_path() / ("bpuq_debug_" + name);
    fs::remove_all(c->dir);
    fs::create_directories(c->dir);
    const std::string cal = bpuq_test::write_reference_samples(reference, c->dir / "cal", a, b);
    nlohmann::json j;
    j["model_parameters"] = {{"onnx_model", bpuq_test::data_dir() + "/" + model},
                             {"output_model_file_prefix", name},
                             {"working_dir", (c->dir / "out").string()},
                             {"debug_mode", "dump_calibration_data"}};
    j["input_parameters"] = input_parameters;
    j["calibration_parameters"] = {{"cal_data_dir", cal}, {"calibration_type", "max"}};
    std::ostringstream console;
    flow::convert(config::parse_convert_config(j, name + ".yaml"), console, {2, 4});
    c->calibrated = (c->dir / "out" / (name + "_calibrated_model.onnx")).string();
    c->data = (c->dir / "out" / "calibration_data").string();
    return c;
}

const Converted* resnet8() {
    static std::unique_ptr<Converted> c = have("cifar10/models/resnet8_fp32.onnx")
                                              ? convert_for_debug("resnet8", "cifar10/models/resnet8_fp32.onnx", "resnet8_fp32", 1, 0,
                                                                  {{"input_type_train", "rgb"}, {"input_type_rt", "rgb"}})
                                              : nullptr;
    return c.get();
}

/// The calibrated model and its dumped calibration data, loaded as bpuq_debug loads them.
struct Loaded {
    debug::CalibratedModel model;
    io::CalibrationSet data;
    explicit Loaded(const Converted& c) : model(onnx_io::load_model(c.calibrated)), data(debug::open_debug_data(c.data, model.graph())) {}
};

std::vector<Tensor> run_outputs(const graph::Graph& g, const std::vector<Tensor>& in) {
    graph::Executor exec{graph::Graph(g)};
    return exec.run(in, graph::ExecContext(1));
}

/// Mean output cosine, over samples [first, last), of the calibrated graph with only `enabled`
/// Calibration nodes switched on, against the same graph with all of them off — computed with
/// the ordinary float executor, independently of the debug tool's cached runner.
double independent_cosine(const graph::Graph& calibrated, const std::set<std::string>& enabled, const io::CalibrationSet& data,
                          std::size_t first, std::size_t last) {
    graph::Graph off = calibrated, on = calibrated;
    calib::set_calibration_enabled(off, {}, false, true);
    calib::set_calibration_enabled(on, {}, false, true);
    calib::set_calibration_enabled(on, enabled, true);
    graph::Executor ref{std::move(off)}, test{std::move(on)};
    const graph::ExecContext ctx(1);
    double sum = 0;
    for (std::size_t s = first; s < last; ++s) {
        const auto in = data.load_sample(s);
        sum += compare(ref.run(in, ctx)[0], test.run(in, ctx)[0]).cosine;
    }
    return sum / double(last - first);
}

std::set<std::string> calibration_names(const debug::CalibratedModel& m, const debug::SensitivityRow& r) {
    std::set<std::string> s;
    for (std::size_t c : r.calibrations) s.insert(m.calibrations()[c].name);
    return s;
}

std::string read_text(const fs::path& p) {
    std::ifstream f(p);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

/// Ranks nodes on samples [0, 4) and checks on samples [4, 8), with the plain executor, that the
/// top-ranked node alone hurts the output more than the bottom-ranked one.
void check_ranking_on_held_out_samples(const Converted& c) {
    const Loaded loaded(c);
    const debug::CalibratedModel& model = loaded.model;
    const io::CalibrationSet& data = loaded.data;
    REQUIRE(data.size() == 8);
    debug::DebugOptions opt;
    opt.data_num = 4;
    opt.threads = 2;
    const debug::DebugSession session(model, data, opt);
    const auto rows = debug::node_sensitivity(session, debug::NodeType::node);
    REQUIRE(rows.size() > 10);
    const auto& top = rows.front();
    // the bottom-ranked node that changes anything (quantizing exact inputs, e.g. image pixels, is lossless)
    auto last = std::find_if(rows.rbegin(), rows.rend(), [](const debug::SensitivityRow& r) { return r.output.cosine < 1.0 - 1e-9; });
    REQUIRE(last != rows.rend());
    const auto& bottom = *last;
    const double top_cos = independent_cosine(model.graph(), calibration_names(model, top), data, 4, 8);
    const double bottom_cos = independent_cosine(model.graph(), calibration_names(model, bottom), data, 4, 8);
    MESSAGE("top " << top.name << " " << top.output.cosine << " (held out " << top_cos << "), bottom " << bottom.name << " "
                   << bottom.output.cosine << " (held out " << bottom_cos << ")");
    CHECK(top.output.cosine < bottom.output.cosine);
    CHECK(top_cos < bottom_cos);
    // the cached runner's number for the top node equals the full executor's on the same samples
    CHECK(independent_cosine(model.graph(), calibration_names(model, top), data, 0, 4) == doctest::Approx(top.output.cosine).epsilon(1e-9));
}

}  // namespace

TEST_CASE("int16 parameters keep the int8 clipping range") {
    QParams p = qparams_from_range(-10.0f, 28.0f, 8, /*symmetric=*/false);
    const float lo = p.scale[0] * float(p.qmin() - p.zero_point[0]), hi = p.scale[0] * float(p.qmax() - p.zero_point[0]);
    const QParams q = debug::int16_params(p);
    CHECK(q.bits == 16);
    CHECK(q.zero_point[0] == 0);
    CHECK(q.scale[0] * 32767.0f == doctest::Approx(std::max(-lo, hi)).epsilon(1e-6));
    const QParams w = debug::int16_params(qparams_from_ranges({-1.0f, -0.5f}, {1.0f, 0.5f}, 0, 8, true, true));
    CHECK(w.narrow);
    CHECK(w.scale[1] * 32767.0f == doctest::Approx(0.5f).epsilon(1e-6));
}

TEST_CASE("CachedRunner: re-running from the float run equals a full run, bit for bit") {
    const Converted* c = resnet8();
    if (!c) return;
    const Loaded loaded(*c);
    const debug::CalibratedModel& model = loaded.model;
    const io::CalibrationSet& data = loaded.data;
    const debug::CachedRunner runner(model.graph());
    const graph::ExecContext ctx(1);
    const auto in = data.load_sample(3);
    const auto float_cfg = model.configure(model.all(debug::CalibMode::float_));
    const debug::RunValues base = runner.run_all(in, float_cfg, ctx);
    std::mt19937 rng(7);
    for (int trial = 0; trial < 6; ++trial) {
        std::vector<debug::CalibMode> modes(model.calibrations().size());
        for (auto& m : modes) m = debug::CalibMode(rng() % 3);
        const auto cfg = model.configure(modes);
        const auto full = runner.run_all(in, cfg, ctx);
        const auto re = runner.rerun(base, float_cfg, cfg, runner.output_slots(), ctx);
        const Tensor& a = full[runner.output_slots()[0]];
        REQUIRE(a.shape() == re[0].shape());
        CHECK(std::memcmp(a.raw(), re[0].raw(), a.nbytes()) == 0);
        // and rerun_all chains: every value equals the full run's
        const auto all = runner.rerun_all(base, float_cfg, cfg, ctx);
        for (const auto& q : model.nodes()) {
            const std::size_t s = runner.slot(q.output);
            CHECK(std::memcmp(all[s].raw(), full[s].raw(), full[s].nbytes()) == 0);
        }
    }
    // the all-quantized configuration is the calibrated model as the float executor runs it
    const auto quant = runner.run_all(in, model.configure(model.all(debug::CalibMode::quantized)), ctx);
    const Tensor expected = run_outputs(model.graph(), in)[0];
    const Tensor& got = quant[runner.output_slots()[0]];
    CHECK(std::memcmp(expected.raw(), got.raw(), got.nbytes()) == 0);
}

TEST_CASE("ResNet-8: views, accumulated error and sensitivity analysis agree with each other") {
    const Converted* c = resnet8();
    if (!c) return;
    const Loaded loaded(*c);
    const debug::CalibratedModel& model = loaded.model;
    const io::CalibrationSet& data = loaded.data;
    debug::DebugOptions opt;
    opt.threads = 2;
    const debug::DebugSession session(model, data, opt);
    const ErrorStats whole = debug::quantized_model_error(session);
    CHECK(whole.cosine > 0.99);
    CHECK(whole.cosine < 1.0);

    // the "all quantized" node curve is the entire view
    const auto entire = debug::entire_errors(session);
    const auto curves = debug::node_error_curves(session, {{"all", {"weight", "activation"}, false}, {"none", {"weight", "activation"}, true}});
    REQUIRE(curves[0].values.size() == entire.size());
    for (std::size_t i = 0; i < entire.size(); ++i) CHECK(curves[0].values[i].cosine == doctest::Approx(entire[i].error.cosine).epsilon(1e-12));
    for (const auto& v : curves[1].values) CHECK(v.cosine == doctest::Approx(1.0).epsilon(1e-12));  // nothing quantized

    // growing prefixes: all nodes quantized is the quantized model, all float is the float model
    const auto up = debug::growing_prefix_curve(session, false);
    const auto down = debug::growing_prefix_curve(session, true);
    CHECK(up.values.back().cosine == doctest::Approx(whole.cosine).epsilon(1e-9));
    CHECK(down.values.back().cosine == doctest::Approx(1.0).epsilon(1e-12));

    // single view <= the node's own sensitivity rows; the most sensitive node gains from int16 and float
    const auto rows = debug::node_sensitivity(session, debug::NodeType::node);
    const auto analysis = debug::sensitivity_analysis(session, 2.0, {}, &rows);  // threshold 2: every node
    REQUIRE(analysis.size() == rows.size());
    const auto& top = analysis.front();
    MESSAGE("ResNet-8 most sensitive: " << top.name << " quantized " << top.quantized.cosine << " int16 " << top.int16.cosine << " float "
                                        << top.float_.cosine);
    CHECK(top.name == rows.front().name);
    // in the quantized model, int16 inputs land closer to float inputs than int8 ones (errors of
    // other nodes may cancel, so float itself need not beat int8 — SEED.md says as much)
    CHECK(std::fabs(top.int16.cosine - top.float_.cosine) < std::fabs(top.quantized.cosine - top.float_.cosine));
    // alone (the rest float), the node with int16 inputs hurts the output less than with int8
    auto modes = model.all(debug::CalibMode::float_);
    for (std::size_t k : rows.front().calibrations) modes[k] = debug::CalibMode::int16;
    const auto alone16 = session.run({{model.configure(modes), false, {}}});
    const double cos16 = alone16[0].output.value(Metric::cosine_similarity);
    MESSAGE("alone: int8 " << rows.front().output.cosine << ", int16 " << cos16);
    CHECK(cos16 > rows.front().output.cosine);
    CHECK(1.0 - cos16 < (1.0 - rows.front().output.cosine) / 10);

    // weight and activation types give one row per Calibration node of that kind
    std::size_t weights = 0;
    for (const auto& cn : model.calibrations()) weights += cn.weight;
    CHECK(debug::node_sensitivity(session, debug::NodeType::weight).size() == weights);
    std::size_t activations = 0;
    for (const auto& cn : model.calibrations()) activations += cn.activation();
    CHECK(debug::node_sensitivity(session, debug::NodeType::activation).size() == activations);
}

TEST_CASE("ResNet-8: the int16 plan picks the best gain first and its later steps equal full runs") {
    const Converted* c = resnet8();
    if (!c) return;
    const Loaded loaded(*c);
    const debug::CalibratedModel& model = loaded.model;
    debug::DebugOptions opt;
    opt.threads = 2;
    // measured on the logits: the softmax of an uncertain sample swings with small changes
    for (const auto& n : model.graph().nodes)
        if (n.op_type == "Softmax") opt.output_node = n.inputs[0];
    REQUIRE(!opt.output_node.empty());
    const debug::DebugSession session(model, loaded.data, opt);
    debug::Int16PlanOptions popt;
    popt.max_nodes = 3;
    popt.pool = 100;  // every candidate stays in the running
    const debug::Int16Plan plan = debug::int16_plan(session, {}, popt);
    REQUIRE(plan.steps.size() >= 2);
    MESSAGE("plan: start " << plan.quantized.cosine << ", +" << plan.steps[0].node << " " << plan.steps[0].output.cosine << ", +"
                           << plan.steps[1].node << " " << plan.steps[1].output.cosine);
    CHECK(plan.first_round.size() == model.nodes().size());
    // every step improves on the one before
    double last = plan.quantized.cosine;
    for (const auto& st : plan.steps) {
        CHECK(st.output.cosine > last);
        last = st.output.cosine;
    }
    // step 1 is the largest int16 gain that sensitivity_analysis measures over every node
    const auto analysis = debug::sensitivity_analysis(session, 2.0);
    double best16 = 0;
    for (const auto& r : analysis) best16 = std::max(best16, r.int16.cosine);
    CHECK(plan.steps[0].output.cosine == best16);
    CHECK(plan.first_round.front().second == best16);
    // step 2 (re-run from the plan's own baseline) equals a full run with both nodes int16
    auto modes = model.all(debug::CalibMode::quantized);
    for (std::size_t i = 0; i < 2; ++i)
        for (std::size_t k : model.nodes()[std::size_t(model.find_node(plan.steps[i].node))].calibrations) modes[k] = debug::CalibMode::int16;
    const auto cfg = model.configure(modes);
    double sum = 0;
    for (std::size_t s = 0; s < session.samples(); ++s) {
        const auto v = session.runner().run_all(loaded.data.load_sample(s), cfg, graph::ExecContext(1));
        std::vector<Tensor> outs;
        for (std::size_t slot : session.compared_slots()) outs.push_back(v[slot]);
        sum += session.output_error(s, outs).cosine;
    }
    CHECK(plan.steps[1].output.cosine == doctest::Approx(sum / double(session.samples())).epsilon(1e-12));
    // candidates must be quantized nodes
    CHECK_THROWS_WITH_AS(debug::int16_plan(session, {"nope"}, popt), doctest::Contains("'nope'"), Error);
}

TEST_CASE("ResNet-8: runall writes every folder and an index.html with the plots inline") {
    const Converted* c = resnet8();
    if (!c) return;
    const Loaded loaded(*c);
    const debug::CalibratedModel& model = loaded.model;
    const io::CalibrationSet& data = loaded.data;
    debug::DebugOptions opt;
    opt.threads = 2;
    opt.metrics = {Metric::cosine_similarity, Metric::sqnr, Metric::mse};
    const debug::DebugSession session(model, data, opt);
    const fs::path dir = c->dir / "debug_result";
    debug::ReportWriter report(session, dir.string());
    const auto rows = report.sensitivity(debug::NodeType::node);
    report.sensitivity(debug::NodeType::weight);
    report.sensitivity(debug::NodeType::activation);
    report.accumulate();
    report.distribution({rows[0].name, model.calibrations()[model.nodes()[0].calibrations[0]].name});
    report.channelwise({rows[0].name});
    report.analysis(0.999, {}, &rows);
    const std::string index = report.finish("resnet8");
    for (const char* f : {"node_sensitivity/sensitivity_of_node.log", "node_sensitivity/sensitivity_of_weight.log",
                          "node_sensitivity/sensitivity_of_activation.json", "node_sensitivity/node_errors.svg",
                          "accumulate_error/accumulate_error.svg", "accumulate_error/growing_sets.svg",
                          "channelwise_distribution/channelwise.json", "sensitivity_analysis/sensitivity_analysis.log", "summary.json",
                          "index.html"})
        CHECK_MESSAGE(fs::exists(dir / f), f);
    const std::string html = read_text(index);
    std::size_t svgs = 0;
    for (std::size_t p = html.find("<svg"); p != std::string::npos; p = html.find("<svg", p + 1)) ++svgs;
    CHECK(svgs >= 7);
    CHECK(html.find("nan") == std::string::npos);
    CHECK(html.find("inf,") == std::string::npos);
    const std::string table = read_text(dir / "node_sensitivity/sensitivity_of_node.log");
    CHECK(table.find("cosine-similarity") != std::string::npos);
    CHECK(table.find("sqnr") != std::string::npos);
    CHECK(table.find(rows[0].name) < table.find(rows.back().name));  // worst first
    const nlohmann::json summary = nlohmann::json::parse(read_text(dir / "summary.json"));
    CHECK(summary["sensitivity"]["node"].size() == rows.size());
}

TEST_CASE("MobileNet V2: the sensitivity ranking holds on held-out samples") {
    if (!have("imagenet/models/mobilenet_v2_1.0_224_fp32.onnx")) return;
    const auto c = convert_for_debug("mv2", "imagenet/models/mobilenet_v2_1.0_224_fp32.onnx", "mobilenet_v2_1.0_224_fp32", 128, 128,
                                     {{"input_type_train", "rgb"}, {"input_type_rt", "rgb"}, {"norm_type", "data_mean_and_scale"},
                                      {"mean_value", "128"}, {"scale_value", "0.0078125"}});
    check_ranking_on_held_out_samples(*c);
}

TEST_CASE("SqueezeNet 1.1: the sensitivity ranking holds on held-out samples") {
    if (!have("imagenet/models/squeezenet1.1_fp32.onnx")) return;
    // the reference inputs are BGR minus the mean: the samples are featuremaps
    const auto c = convert_for_debug("sq", "imagenet/models/squeezenet1.1_fp32.onnx", "squeezenet1.1_fp32", 1, 0,
                                     {{"input_type_train", "featuremap"}, {"input_type_rt", "featuremap"}});
    check_ranking_on_held_out_samples(*c);
}

TEST_CASE("bad input is named") {
    const Converted* c = resnet8();
    if (!c) return;
    const fs::path optimized = c->dir / "out" / "resnet8_optimized_float_model.onnx";
    CHECK_THROWS_WITH(debug::CalibratedModel(onnx_io::load_model(optimized.string())),
                      doctest::Contains("has no ai.bpuq Calibration nodes"));
    const debug::CalibratedModel model(onnx_io::load_model(c->calibrated));
    CHECK_THROWS_WITH(debug::open_debug_data((c->dir / "nowhere").string(), model.graph()), doctest::Contains("nowhere"));
    const io::CalibrationSet data = debug::open_debug_data(c->data, model.graph());
    const debug::DebugSession session(model, data);
    CHECK_THROWS_WITH(debug::node_sensitivity(session, debug::NodeType::node, {"no_such_node"}), doctest::Contains("no_such_node"));
    CHECK_THROWS_WITH(debug::parse_node_type("layer"), doctest::Contains("node, weight, activation"));
    CHECK_THROWS_WITH(debug::modes_of(model, {"x", {"Conv_zzz"}, false}), doctest::Contains("Conv_zzz"));
    debug::DebugOptions bad;
    bad.output_node = "not_a_tensor";
    CHECK_THROWS_WITH(debug::DebugSession(model, data, bad), doctest::Contains("not_a_tensor"));
}
