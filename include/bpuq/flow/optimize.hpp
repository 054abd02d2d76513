// The accuracy optimizer (SPEC §3, bpuq_optimize): given a target — the integer program's output
// cosine against the float model, or top-1 on a labelled set within an allowed loss — searches the
// cheapest configuration that reaches it, in the order SEED.md recommends: calibration method and
// max_percentile; asymmetric and bias_correction; the fewest nodes raised to int16 (planned by the
// debug tool: greedily, by each node's gain in the quantized model); last, the fewest tail nodes
// moved to the CPU. Every trial is a full
// bpuq_convert run of a config, so the chosen config reproduces its result through bpuq_convert.
#pragma once

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../debug/int16_plan.hpp"
#include "convert.hpp"

BPUQ_NAMESPACE_BEGIN
namespace flow {

struct OptimizeTarget {
    /// > 0: reach this mean output cosine (integer program vs float model, on the first
    /// eval_samples calibration samples — the output table of the conversion log).
    double cosine = 0.0;
    /// Top-1 target: a folder of samples (.npy, the model's raw inputs, as for cal_data_dir) and
    /// an .npy of int labels, one per sample, as output indices; reach float top-1 minus max_top1_loss.
    std::string eval_dir;
    std::string eval_labels;
    double max_top1_loss = 0.0;  ///< points (percent)

    bool top1() const { return !eval_dir.empty(); }
};

struct OptimizeOptions {
    std::string work_dir = "optimize_work";  ///< every trial converts into a sub-folder
    int threads = 0;                         ///< 0 = all hardware threads
    std::size_t eval_samples = 50;           ///< calibration samples in each trial's output cosine
    /// Samples the int16 plan is estimated on (debug tool); 0 = the eval_samples the trials are
    /// measured on (a few samples with low cosine dominate the mean: other samples mislead)
    std::size_t sensitivity_samples = 0;
    std::size_t max_int16 = 24;              ///< int16 nodes at most (the plan's length)
    std::size_t max_int16_tries = 8;         ///< prefixes of the int16 plan converted at most (bisection)
    std::size_t max_cpu = 2;                 ///< tail nodes moved to the CPU at most (SEED.md: 1 or 2)
};

/// One conversion tried by the search.
struct Trial {
    std::string step;    ///< calibration | options | int16 | cpu
    std::string change;  ///< what differs from the best config so far
    nlohmann::json config;
    double cosine = 0.0;
    double top1 = -1.0;  ///< percent, when the target is top-1
    std::size_t int16_nodes = 0, cpu_nodes = 0;
    bool meets = false;
    bool kept = false;   ///< became the best so far
    double seconds = 0.0;
    std::string error;   ///< a config the flow refused (e.g. an option not implemented)
};

struct OptimizeResult {
    std::vector<Trial> trials;
    std::size_t best = 0;
    bool reached = false;
    double float_top1 = -1.0;
    nlohmann::json report() const;
};

namespace detail {

inline Trial make_trial(std::string step, std::string change, nlohmann::json config) {
    Trial t;
    t.step = std::move(step);
    t.change = std::move(change);
    t.config = std::move(config);
    return t;
}

/// Better = meets the target when the other does not; among trials that meet it, the cheaper
/// (fewer int16 and CPU nodes); else the higher metric (top-1, then cosine as the tie-break).
inline bool better(const Trial& a, const Trial& b, bool top1) {
    if (!a.error.empty()) return false;
    if (!b.error.empty()) return true;
    if (a.meets != b.meets) return a.meets;
    if (a.meets && a.int16_nodes + a.cpu_nodes != b.int16_nodes + b.cpu_nodes) return a.int16_nodes + a.cpu_nodes < b.int16_nodes + b.cpu_nodes;
    if (top1 && a.top1 != b.top1) return a.top1 > b.top1;
    return a.cosine > b.cosine;
}

inline void set_optimization_item(nlohmann::json& j, const std::string& item, bool on) {
    nlohmann::json& cp = j["calibration_parameters"];
    std::vector<std::string> items;
    if (cp.contains("optimization")) {
        const auto& o = cp["optimization"];
        if (o.is_array())
            for (const auto& x : o) items.push_back(x.get<std::string>());
        else if (o.is_string() && !o.get<std::string>().empty()) {
            std::string s = o.get<std::string>();
            for (char& c : s)
                if (c == ';') c = ',';
            std::stringstream ss(s);
            for (std::string x; std::getline(ss, x, ',');)
                if (!x.empty()) items.push_back(x);
        }
    }
    items.erase(std::remove(items.begin(), items.end(), item), items.end());
    if (on) items.push_back(item);
    cp["optimization"] = items;
}

inline bool has_optimization_item(const nlohmann::json& j, const std::string& item) {
    const auto& cp = j.at("calibration_parameters");
    if (!cp.contains("optimization")) return false;
    const auto& o = cp.at("optimization");
    if (o.is_array()) return std::find(o.begin(), o.end(), item) != o.end();
    return o.is_string() && o.get<std::string>().find(item) != std::string::npos;
}

inline std::size_t count_node_info(const nlohmann::json& j, const std::string& key, const std::string& value) {
    std::size_t n = 0;
    const auto& mp = j.at("model_parameters");
    if (!mp.contains("node_info") || !mp.at("node_info").is_object()) return 0;
    for (const auto& kv : mp.at("node_info").items())
        if (kv.value().is_object() && kv.value().contains(key) && kv.value().at(key) == value) ++n;
    return n;
}

inline std::vector<std::int64_t> read_labels(const std::string& path) {
    const Tensor t = io::read_npy(path);
    std::vector<std::int64_t> out(std::size_t(t.numel()));
    for (std::size_t i = 0; i < out.size(); ++i) {
        switch (t.dtype()) {
            case DType::int64: out[i] = t.data<std::int64_t>()[i]; break;
            case DType::int32: out[i] = t.data<std::int32_t>()[i]; break;
            case DType::uint8: out[i] = t.data<std::uint8_t>()[i]; break;
            case DType::int16: out[i] = t.data<std::int16_t>()[i]; break;
            default: BPUQ_THROW("optimize.labels", "labels file '" + path + "' must hold integers (int64, int32, int16 or uint8)");
        }
    }
    return out;
}

inline std::size_t argmax(const Tensor& t) {
    const Tensor f = io::to_float32(t);
    const float* p = f.data<float>();
    return std::size_t(std::max_element(p, p + f.numel()) - p);
}

/// Top-1 (percent) of a model run sample by sample: `run(inputs) -> first output`.
template <class Run>
double top1_of(const io::CalibrationSet& data, const std::vector<std::int64_t>& labels, int threads, Run&& run) {
    std::vector<int> hit(data.size(), 0);
    calib::for_each_sample(data.size(), threads, [&](int, std::size_t s, const graph::ExecContext& ctx) {
        hit[s] = std::int64_t(argmax(run(data.load_sample(s), ctx))) == labels[s];
    });
    std::size_t n = 0;
    for (int h : hit) n += std::size_t(h);
    return 100.0 * double(n) / double(std::max<std::size_t>(1, data.size()));
}

}  // namespace detail

inline nlohmann::json OptimizeResult::report() const {
    nlohmann::json r;
    r["reached"] = reached;
    r["best"] = best;
    if (float_top1 >= 0) r["float_top1"] = float_top1;
    r["trials"] = nlohmann::json::array();
    for (const auto& t : trials) {
        nlohmann::json x = {{"step", t.step},       {"change", t.change},         {"cosine", t.cosine}, {"int16_nodes", t.int16_nodes},
                            {"cpu_nodes", t.cpu_nodes}, {"meets_target", t.meets}, {"kept", t.kept},     {"seconds", t.seconds}};
        if (t.top1 >= 0) x["top1"] = t.top1;
        if (!t.error.empty()) x["error"] = t.error;
        r["trials"].push_back(x);
    }
    r["config"] = trials.empty() ? nlohmann::json() : trials[best].config;
    return r;
}

/// Runs the search from `base` (a config as JSON; `source`/`base_dir` as for parse_convert_config).
/// Progress and a line per trial go to `log`. Throws bpuq::Error on bad input (the base config,
/// the labelled set); a trial the flow refuses is recorded with its error and skipped.
inline OptimizeResult optimize(const nlohmann::json& base, const std::string& source, const std::string& base_dir,
                               const OptimizeTarget& target, const OptimizeOptions& opt, std::ostream& log) {
    namespace fs = std::filesystem;
    using clock = std::chrono::steady_clock;
    BPUQ_CHECK(target.cosine > 0.0 || target.top1(), "optimize.target",
               "give a target: an output cosine (e.g. 0.999) or a labelled set with an allowed top-1 loss");
    BPUQ_CHECK(target.cosine <= 1.0, "optimize.target", "the cosine target " + std::to_string(target.cosine) + " is above 1");
    BPUQ_CHECK(target.max_top1_loss >= 0.0, "optimize.target", "the allowed top-1 loss must be >= 0 points");
    const config::ConvertConfig base_cfg = config::parse_convert_config(base, source, base_dir);
    const int threads = opt.threads > 0 ? opt.threads : std::max(1, int(std::thread::hardware_concurrency()));
    const bool top1 = target.top1();

    // the labelled set, checked before any conversion
    std::unique_ptr<io::CalibrationSet> eval;
    std::vector<std::int64_t> labels;
    OptimizeResult result;
    fs::create_directories(opt.work_dir);

    auto trial_config = [&](nlohmann::json j, std::size_t index) {
        j["model_parameters"]["working_dir"] = (fs::absolute(opt.work_dir) / ("trial_" + std::to_string(index))).string();
        return j;
    };
    auto run_trial = [&](Trial t) -> Trial {
        const auto t0 = clock::now();
        const std::size_t index = result.trials.size();
        try {
            const config::ConvertConfig cfg = config::parse_convert_config(trial_config(t.config, index), source, base_dir);
            std::ostringstream quiet;
            const ConvertResult cr = convert(cfg, quiet, {threads, opt.eval_samples});
            double cos = 0;
            for (const auto& o : cr.report.at("outputs")) cos += o.at("cosine_similarity").get<double>();
            t.cosine = cos / double(std::max<std::size_t>(1, cr.report.at("outputs").size()));
            if (top1) {
                if (!eval) {  // first trial: open the labelled set and measure the float model
                    const graph::Graph original = onnx_io::load_model(cr.artifacts.at("original_float_model"));
                    std::vector<io::CalibrationInputSpec> specs;
                    for (const auto& in : original.inputs) {
                        Shape s = original.find_value(in)->shape;
                        for (auto& d : s) d = d < 0 ? 1 : d;
                        specs.push_back({in, target.eval_dir, "float32", s});
                    }
                    BPUQ_CHECK(specs.size() == 1, "optimize.target", "the top-1 target supports models with one input");
                    eval = std::make_unique<io::CalibrationSet>(specs);
                    // labelled samples are in the training colour type, like calibration samples
                    const config::InputSpec& spec = cfg.inputs.front();
                    if (spec.is_image() && spec.type_rt != spec.type_train)
                        eval->set_transform(0, [spec](const Tensor& x) { return calibration_sample_to_model_input(x, spec); });
                    labels = detail::read_labels(target.eval_labels);
                    BPUQ_CHECK(labels.size() == eval->size(), "optimize.labels",
                               "'" + target.eval_labels + "' has " + std::to_string(labels.size()) + " labels but '" + target.eval_dir +
                                   "' holds " + std::to_string(eval->size()) + " samples");
                    const graph::Executor fexec{graph::Graph(original)};
                    result.float_top1 = detail::top1_of(*eval, labels, threads, [&](const std::vector<Tensor>& in, const graph::ExecContext& ctx) {
                        return fexec.run(in, ctx)[0];
                    });
                    log << "  float model top-1 on " << eval->size() << " labelled samples: " << result.float_top1 << "%\n";
                }
                emul::Program p = emul::load_program_file(cr.artifacts.at("integer_program"));
                const emul::ProgramExecutor pexec(std::move(p));
                t.top1 = detail::top1_of(*eval, labels, threads, [&](const std::vector<Tensor>& in, const graph::ExecContext&) {
                    return pexec.run(in)[0];
                });
            }
            t.meets = top1 ? result.float_top1 - t.top1 <= target.max_top1_loss + 1e-9 : t.cosine >= target.cosine;
        } catch (const Error& e) {
            const std::string what = e.what();
            // the config as given failing, or bad input every trial would hit, is the user's to fix: stop
            if (index == 0 || what.find("optimize.") != std::string::npos || what.find("calibration.") != std::string::npos ||
                what.find("io.") != std::string::npos)
                throw;
            t.error = what;
        }
        t.int16_nodes = detail::count_node_info(t.config, "InputType", "int16");
        t.cpu_nodes = detail::count_node_info(t.config, "ON", "CPU");
        t.seconds = std::chrono::duration<double>(clock::now() - t0).count();
        std::ostringstream line;
        line << "  [" << index << "] " << t.step << ": " << t.change;
        if (!t.error.empty()) line << " -- refused: " << t.error;
        else {
            line << " -- cosine " << t.cosine;
            if (top1) line << ", top-1 " << t.top1 << "%";
            line << (t.meets ? " (meets the target)" : "");
        }
        line << " [" << t.seconds << " s]";
        log << line.str() << "\n" << std::flush;
        return t;
    };
    auto best = [&]() -> const Trial& { return result.trials[result.best]; };
    auto consider = [&](Trial t) {
        t = run_trial(std::move(t));
        result.trials.push_back(t);
        const std::size_t i = result.trials.size() - 1;
        if (i == 0 || detail::better(result.trials[i], best(), top1)) {
            if (i > 0) result.trials[result.best].kept = false;
            result.best = i;
            result.trials[i].kept = true;
        }
        return result.trials[i];
    };
    auto done = [&]() { return best().error.empty() && best().meets; };

    // node_info in its long form, so that steps 3 and 4 can add nodes to it
    nlohmann::json start = base;
    start["model_parameters"]["node_info"] = config::node_info_to_json(base_cfg.node_info);

    // ---- 0. the config as given ----
    log << "optimize: target " << (top1 ? "top-1 within " + std::to_string(target.max_top1_loss) + " points of float"
                                        : "output cosine >= " + std::to_string(target.cosine))
        << "\n";
    consider(detail::make_trial("baseline", "the config as given", start));

    // ---- 1. calibration method and max_percentile (same cost: keep the best) ----
    if (!done()) {
        log << "step 1: calibration method and max_percentile\n";
        const nlohmann::json from = best().config;
        struct M {
            std::string type;
            double p;
        };
        for (const M& m : std::vector<M>{{"default", 1.0}, {"kl", 1.0}, {"max", 1.0}, {"mse", 1.0}, {"max", 0.99999}, {"max", 0.99995},
                                         {"max", 0.9999}, {"max", 0.9995}, {"max", 0.999}}) {
            if (from["calibration_parameters"].value("calibration_type", "default") == m.type &&
                from["calibration_parameters"].value("max_percentile", 1.0) == m.p)
                continue;
            nlohmann::json j = from;
            j["calibration_parameters"]["calibration_type"] = m.type;
            j["calibration_parameters"]["max_percentile"] = m.p;
            consider(detail::make_trial("calibration", "calibration_type " + m.type + (m.p < 1.0 ? ", max_percentile " + std::to_string(m.p) : ""), j));
        }
    }

    // ---- 2. options: asymmetric, bias_correction (kept when they help) ----
    if (!done()) {
        log << "step 2: asymmetric, per_channel, bias_correction\n";
        for (const std::string item : {"asymmetric", "per_channel", "bias_correction"}) {
            if (done()) break;
            nlohmann::json j = best().config;
            nlohmann::json& cp = j["calibration_parameters"];
            bool on = false;
            if (item == "per_channel") {  // a calibration_parameters key; the default search tries it itself
                if (cp.value("calibration_type", "default") == "default") continue;
                on = !cp.value("per_channel", false);
                cp["per_channel"] = on;
            } else {
                on = !detail::has_optimization_item(j, item);
                detail::set_optimization_item(j, item, on);
            }
            consider(detail::make_trial("options", std::string(on ? "add " : "remove ") + item, j));
        }
    }

    // ---- pin the calibration choice: a `default` (search) config re-searches in every trial,
    // and with int16 or CPU nodes its fake-quant scoring may pick another method than the one
    // steps 1-2 measured on the program; steps 3-4 change one thing at a time ----
    if (!done() && best().error.empty() && best().config["calibration_parameters"].value("calibration_type", "default") == "default") {
        std::ifstream f((fs::absolute(opt.work_dir) / ("trial_" + std::to_string(result.best)) / "report.json").string());
        const nlohmann::json chosen = nlohmann::json::parse(f).at("calibration");
        const std::string method = chosen.value("method_name", "");
        if (method == "max" || method == "kl" || method == "mse" || method == "percentile") {
            Trial& b = result.trials[result.best];
            b.config["calibration_parameters"]["calibration_type"] = method;
            b.config["calibration_parameters"]["max_percentile"] = chosen.value("max_percentile", 1.0);
            if (chosen.value("per_channel", false)) b.config["calibration_parameters"]["per_channel"] = true;
            detail::set_optimization_item(b.config, "asymmetric", chosen.value("asymmetric", false));
            log << "  the default search chose " << chosen.value("method", method) << ": pinned for the next steps\n";
        }
    }

    // ---- 3. int16 for the nodes that help most ----
    if (!done() && base_cfg.int16_allowed()) {
        const std::size_t plan_samples = opt.sensitivity_samples ? opt.sensitivity_samples : opt.eval_samples;
        log << "step 3: int16 nodes, planned with the debug tool on " << plan_samples << " samples\n";
        // the best config once more, with its calibration data dumped for the debug tool
        nlohmann::json j = trial_config(best().config, result.trials.size());
        j["model_parameters"]["working_dir"] = (fs::absolute(opt.work_dir) / "ranking").string();
        j["model_parameters"]["debug_mode"] = "dump_calibration_data";
        const config::ConvertConfig cfg = config::parse_convert_config(j, source, base_dir);
        std::ostringstream quiet;
        const ConvertResult cr = convert(cfg, quiet, {threads, opt.eval_samples});
        const debug::CalibratedModel model(onnx_io::load_model(cr.artifacts.at("calibrated_model")));
        const io::CalibrationSet data = debug::open_debug_data((fs::path(cfg.working_dir) / "calibration_data").string(), model.graph());
        debug::DebugOptions dopt;
        dopt.data_num = plan_samples;
        dopt.threads = threads;
        // a model whose output is a Softmax is planned on the Softmax's input (the logits): the
        // softmax of a few uncertain samples swings with one-step rounding differences between the
        // fake-quant model and the program, and the logits' error is what int16 nodes reduce
        const graph::Graph& mg = model.graph();
        if (mg.outputs.size() == 1)
            for (const auto& n : mg.nodes)
                if (n.op_type == "Softmax" && n.outputs.size() == 1 && n.outputs[0] == mg.outputs[0] && !n.inputs.empty())
                    dopt.output_node = n.inputs[0];
        const debug::DebugSession session(model, data, dopt);
        if (!dopt.output_node.empty()) log << "  planned on the logits '" << dopt.output_node << "' (the input of the output Softmax)\n";
        const nlohmann::json from = best().config;
        const nlohmann::json node_info = from["model_parameters"].value("node_info", nlohmann::json::object());
        std::vector<std::string> candidates;
        for (const auto& n : cr.report.at("nodes")) {
            const std::string name = n.at("node").get<std::string>();
            if (n.at("on") == "BPU" && !node_info.contains(name) && model.find_node(name) >= 0) candidates.push_back(name);
        }
        // the plan: up to max_int16 nodes chosen one at a time by their gain in the quantized model
        // (a fake-quant estimate). The integer program rounds differently from the fake-quant model
        // (one-step differences that spread through the graph), so a single node's measured gain is
        // often below that noise: conversions verify prefixes of the plan instead of judging nodes
        // one by one.
        debug::Int16PlanOptions popt;
        popt.target_cosine = 1.0;
        popt.max_nodes = opt.max_int16;
        const auto t0 = clock::now();
        const debug::Int16Plan plan = candidates.empty() ? debug::Int16Plan{} : debug::int16_plan(session, candidates, popt);
        log << "  plan (" << std::chrono::duration<double>(clock::now() - t0).count() << " s; estimated output cosine, start "
            << plan.quantized.cosine << "):";
        for (const auto& st : plan.steps) log << " +" << st.node << " " << st.output.cosine;
        log << "\n";
        // the shortest prefix that meets the target, by bisection (more int16 nodes are assumed
        // not to hurt): the whole plan first — if it misses, no prefix is likely to meet it
        auto try_prefix = [&](std::size_t k) {
            nlohmann::json c = from;
            std::string names;
            for (std::size_t i = 0; i < k; ++i) {
                c["model_parameters"]["node_info"][plan.steps[i].node] = {{"InputType", "int16"}};
                names += (i ? ", " : "") + plan.steps[i].node;
            }
            return consider(detail::make_trial("int16", "node_info InputType int16 for " + std::to_string(k) + " node(s): " + names, c)).meets;
        };
        std::size_t tries = 0;
        if (!plan.steps.empty() && opt.max_int16_tries > 0) {
            ++tries;
            if (try_prefix(plan.steps.size())) {
                std::size_t lo = 1, hi = plan.steps.size();  // hi meets the target
                while (lo < hi && tries < opt.max_int16_tries) {
                    const std::size_t mid = (lo + hi) / 2;
                    ++tries;
                    if (try_prefix(mid)) hi = mid;
                    else lo = mid + 1;
                }
            }
        }
    }

    // ---- 4. the fewest tail nodes on the CPU ----
    if (!done() && opt.max_cpu > 0) {
        log << "step 4: tail nodes on the CPU\n";
        // BPU nodes in topological order from the best trial's report; the tail is the end of it
        std::ifstream f((fs::absolute(opt.work_dir) / ("trial_" + std::to_string(result.best)) / "report.json").string());
        const nlohmann::json rep = nlohmann::json::parse(f);
        std::vector<std::string> bpu;
        for (const auto& n : rep.at("nodes"))
            if (n.at("on") == "BPU" && n.at("type") != "Reshape" && n.at("type") != "Flatten") bpu.push_back(n.at("node").get<std::string>());
        const nlohmann::json from = best().config;
        for (std::size_t k = 1; k <= std::min(opt.max_cpu, bpu.size()) && !done(); ++k) {
            nlohmann::json j = from;
            std::string names;
            for (std::size_t i = 0; i < k; ++i) {
                const std::string& n = bpu[bpu.size() - 1 - i];
                j["model_parameters"]["node_info"][n] = {{"ON", "CPU"}};
                names += (names.empty() ? "" : ", ") + n;
            }
            consider(detail::make_trial("cpu", "ON: CPU for the last " + std::to_string(k) + " BPU node(s): " + names, j));
        }
    }
    result.reached = done();
    log << (result.reached ? "target reached" : "target NOT reached") << " by trial [" << result.best << "] " << best().change
        << " (cosine " << best().cosine;
    if (top1) log << ", top-1 " << best().top1 << "% vs float " << result.float_top1 << "%";
    log << ", " << best().int16_nodes << " int16 node(s), " << best().cpu_nodes << " CPU node(s))\n";
    return result;
}

}  // namespace flow
BPUQ_NAMESPACE_END
