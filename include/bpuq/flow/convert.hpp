// The conversion flow (bpuq_convert, the equivalent of `hb_mapper makertbin`): check, preprocess,
// optimize, calibrate, quantize, lower to an integer program, evaluate, and write every artifact
// atomically with a log and a machine-readable report. The driver only parses arguments.
#pragma once

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <map>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "../calib/bias_correction.hpp"
#include "../calib/calibration_file.hpp"
#include "../calib/collect.hpp"
#include "../calib/constants.hpp"
#include "../calib/qdq.hpp"
#include "../calib/qdq_import.hpp"
#include "../calib/search.hpp"
#include "../config/convert_config.hpp"
#include "../emul/executor.hpp"
#include "../emul/lower.hpp"
#include "../emul/program_format.hpp"
#include "../graph/passes.hpp"
#include "../io/atomic_file.hpp"
#include "../io/npy.hpp"
#include "../io/random_samples.hpp"
#include "../onnx/export.hpp"
#include "../onnx/import.hpp"
#include "colour_conversion.hpp"
#include "mix.hpp"
#include "preprocess.hpp"

BPUQ_NAMESPACE_BEGIN
namespace flow {

struct ConvertOptions {
    int threads = 0;                  ///< 0 = all hardware threads
    std::size_t eval_samples = 50;    ///< samples used for the node and output tables (0 = all)
    std::size_t bias_correction_samples = 100;  ///< calibration samples bias_correction averages over (0 = all)
    std::size_t random_samples = 8;   ///< random samples of calibration_type skip (and of load without cal_data_dir)
};

/// Console + log file writer: every line goes to both, the file is written at the end.
class ConvertLog {
public:
    explicit ConvertLog(std::ostream& console) : console_(console) {}
    void line(const std::string& s) {
        console_ << s << '\n';
        console_.flush();
        text_ << s << '\n';
    }
    /// Progress on the console only (overwritten in place).
    void progress(const std::string& what, std::size_t done, std::size_t total) {
        console_ << '\r' << what << ' ' << done << '/' << total << (done == total ? "\n" : "") << std::flush;
    }
    std::string text() const { return text_.str(); }

private:
    std::ostream& console_;
    std::ostringstream text_;
};

struct ConvertResult {
    nlohmann::json report;
    std::map<std::string, std::string> artifacts;  ///< kind -> path
};

namespace detail {

inline std::string fixed(double v, int digits = 6) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(digits) << v;
    return s.str();
}

inline std::string pad(const std::string& s, std::size_t w) { return s.size() >= w ? s + " " : s + std::string(w - s.size(), ' '); }

inline std::string choice_log_lines(const calib::CalibChoice& c) {
    std::string m = c.method == CalibMethod::kl ? "kl"
                    : c.method == CalibMethod::mse ? "mse"
                    : (c.method == CalibMethod::max && c.percentile < 1.0) || c.method == CalibMethod::percentile ? "max-percentile"
                                                                                                                 : "max";
    std::string s = "Select " + m + " method.";
    if (c.percentile < 1.0) s += "\nmax_percentile: " + fixed(c.percentile, 5);
    if (c.per_channel) s += "\nPerchannel quantization is enabled.";
    if (c.asymmetric) s += "\nAsymmetric quantization is enabled.";
    return s;
}

inline double elapsed_s(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace detail

/// Runs the whole conversion. Throws bpuq::Error (naming the file/node/key) on bad input; the
/// artifacts written before a failure are complete files, never truncated ones.
inline ConvertResult convert(const config::ConvertConfig& cfg, std::ostream& console, const ConvertOptions& opt = {}) {
    namespace fs = std::filesystem;
    using clock = std::chrono::steady_clock;
    const int threads = opt.threads > 0 ? opt.threads : std::max(1, int(std::thread::hardware_concurrency()));
    ConvertLog log(console);
    ConvertResult result;
    nlohmann::json& rep = result.report;
    nlohmann::ordered_json timings = nlohmann::ordered_json::object();  // stage order
    const auto t_start = clock::now();
    const std::string prefix = (fs::path(cfg.working_dir) / cfg.output_model_file_prefix).string();
    auto artifact = [&](const std::string& kind, const std::string& path) {
        result.artifacts[kind] = path;
        log.line("  wrote " + path);
    };

    log.line("bpuq " + std::to_string(BPUQ_VERSION_MAJOR) + "." + std::to_string(BPUQ_VERSION_MINOR) + "." +
             std::to_string(BPUQ_VERSION_PATCH) + " conversion: " + cfg.source);
    log.line("config as understood:");
    {
        std::istringstream js(config::to_json(cfg).dump(2));
        for (std::string l; std::getline(js, l);) log.line("  " + l);
    }
    const bool skip = cfg.calibration_type == "skip";
    const bool load = cfg.calibration_type == "load";
    const bool load_qdq = load && cfg.calibration_file.empty();
    const std::string skip_warning =
        "WARNING: calibration_type skip: calibrated on " + std::to_string(opt.random_samples) +
        " RANDOM samples, not on data. The quantized model's accuracy is NOT meaningful; use it for speed checks only.";
    if (skip) log.line(skip_warning);
    // a calibration file is read before anything is written, so a bad file leaves no artifacts
    calib::CalibrationFile cal_file;
    if (load && !load_qdq) {
        const std::string& f = cfg.calibration_file;
        BPUQ_CHECK(f.size() < 5 || f.compare(f.size() - 5, 5, ".onnx") != 0, "config.calibration_file",
                   "config " + cfg.source + ": calibration_parameters.calibration_file '" + f +
                       "' is an ONNX model; a QDQ model is loaded by giving it as model_parameters.onnx_model with "
                       "calibration_type load and no calibration_file (see docs/DECISIONS.md)");
        cal_file = calib::read_calibration_file(f);
    }

    // ---- 1. check ----
    auto t0 = clock::now();
    log.line("[1/7] check: loading " + cfg.onnx_model);
    graph::Graph source = onnx_io::load_model(cfg.onnx_model);
    calib::QdqParameters qdq;
    if (load_qdq) {
        BPUQ_CHECK(calib::has_qdq(source), "config.load",
                   "config " + cfg.source + ": calibration_type load without calibration_parameters.calibration_file takes "
                   "the scales of a QDQ model, but onnx_model " + cfg.onnx_model +
                   " has no QuantizeLinear/DequantizeLinear nodes; give calibration_file (the <prefix>_calibration.json "
                   "of an earlier run) or a QDQ model");
        qdq = calib::strip_qdq(source, cfg.onnx_model);
        log.line("  QDQ model: removed " + std::to_string(qdq.quantize_nodes) + " QuantizeLinear and " +
                 std::to_string(qdq.dequantize_nodes) + " DequantizeLinear nodes; " + std::to_string(qdq.activations.size()) +
                 " activation and " + std::to_string(qdq.weights.size()) + " weight quantizations read");
    } else {
        BPUQ_CHECK(!calib::has_qdq(source), "config.qdq_model",
                   "config " + cfg.source + ": onnx_model " + cfg.onnx_model +
                       " holds QuantizeLinear/DequantizeLinear nodes (an already quantized model); convert it with "
                       "calibration_type load (and no calibration_file) to take its scales, or give the float model");
    }
    if (!cfg.output_nodes.empty()) {
        for (const auto& o : cfg.output_nodes) {
            bool found = source.find_value(o) != nullptr;
            for (const auto& n : source.nodes)
                for (const auto& x : n.outputs) found = found || x == o;
            BPUQ_CHECK(found, "config.output_nodes",
                       "config " + cfg.source + ": model_parameters.output_nodes: the model has no tensor named '" + o + "'");
        }
        source.outputs = cfg.output_nodes;
        source.remove_unused();
    }
    const std::vector<std::string> model_inputs = source.inputs;
    // config inputs -> model inputs (by name, or the model's only input)
    std::vector<const config::InputSpec*> spec_of(model_inputs.size(), nullptr);
    if (cfg.inputs.size() == 1 && cfg.inputs[0].name.empty()) {
        BPUQ_CHECK(model_inputs.size() == 1, "config.input_name",
                   "config " + cfg.source + ": input_parameters.input_name is required: the model has " +
                       std::to_string(model_inputs.size()) + " inputs (" + config::join(model_inputs, ", ") + ")");
        spec_of[0] = &cfg.inputs[0];
    } else {
        for (const auto& in : cfg.inputs) {
            auto it = std::find(model_inputs.begin(), model_inputs.end(), in.name);
            BPUQ_CHECK(it != model_inputs.end(), "config.input_name",
                       "config " + cfg.source + ": input_parameters.input_name: the model has no input '" + in.name +
                           "'; its inputs are " + config::join(model_inputs, ", "));
            spec_of[std::size_t(it - model_inputs.begin())] = &in;
        }
        for (std::size_t i = 0; i < model_inputs.size(); ++i)
            BPUQ_CHECK(spec_of[i], "config.input_name",
                       "config " + cfg.source + ": input_parameters.input_name does not describe model input '" + model_inputs[i] + "'");
    }
    std::vector<Shape> input_shapes;
    for (std::size_t i = 0; i < model_inputs.size(); ++i) {
        graph::Value& v = source.value(model_inputs[i]);
        Shape s = v.shape;
        if (!spec_of[i]->shape.empty()) {
            BPUQ_CHECK(!v.has_shape || v.shape.size() == spec_of[i]->shape.size(), "config.input_shape",
                       "config " + cfg.source + ": input_parameters.input_shape " + shape_to_string(spec_of[i]->shape) +
                           " has a different rank than model input '" + model_inputs[i] + "' " + shape_to_string(v.shape));
            for (std::size_t d = 0; v.has_shape && d < s.size(); ++d)
                BPUQ_CHECK(s[d] < 0 || s[d] == spec_of[i]->shape[d], "config.input_shape",
                           "config " + cfg.source + ": input_parameters.input_shape " + shape_to_string(spec_of[i]->shape) +
                               " contradicts model input '" + model_inputs[i] + "' " + shape_to_string(v.shape));
            s = spec_of[i]->shape;
        }
        BPUQ_CHECK(!s.empty(), "config.input_shape", "model input '" + model_inputs[i] + "' has no shape; give input_shape");
        for (auto& d : s) {
            if (d < 0) d = 1;  // a dynamic batch becomes 1
        }
        v.shape = s;
        v.has_shape = true;
        input_shapes.push_back(s);
    }
    graph::infer_shapes(source);
    timings["check"] = detail::elapsed_s(t0);

    // ---- 2. original float model: preprocessing inserted ----
    t0 = clock::now();
    log.line("[2/7] original float model: inserting preprocessing");
    graph::Graph original = source;
    std::vector<ColourConversion> colour(model_inputs.size());
    for (std::size_t i = 0; i < model_inputs.size(); ++i) {
        colour[i] = insert_colour_conversion(original, model_inputs[i], *spec_of[i]);
        if (!colour[i].conv_node.empty())
            log.line("  input '" + model_inputs[i] + "': runtime " + spec_of[i]->type_rt +
                     (spec_of[i]->type_rt == "nv12" ? " (fed as yuv444, " + spec_of[i]->space_and_range + ")" : std::string()) +
                     " -> training " + spec_of[i]->type_train + ": colour conversion '" + colour[i].conv_node + "' inserted");
        const std::string seen =
            insert_preprocessing(original, colour[i].output.empty() ? model_inputs[i] : colour[i].output, *spec_of[i]);
        // a QDQ model's input quantization describes what its first layers read: the normalized tensor
        auto it = qdq.activations.find(model_inputs[i]);
        if (seen != model_inputs[i] && it != qdq.activations.end()) {
            qdq.activations[seen] = it->second;
            qdq.activations.erase(it);
        }
    }
    graph::infer_shapes(original);
    {
        const std::string path = prefix + "_original_float_model.onnx";
        std::string bytes;
        onnx_io::export_model(original).SerializeToString(&bytes);
        io::write_file_atomic(path, bytes);
        artifact("original_float_model", path);
    }
    timings["original_float_model"] = detail::elapsed_s(t0);

    // ---- 3. optimized float model ----
    t0 = clock::now();
    log.line("[3/7] optimized float model");
    graph::Graph optimized = original;
    const graph::OptimizeReport orep = graph::optimize(optimized);
    log.line("  removed " + std::to_string(orep.identities) + " identity/dropout, folded " + std::to_string(orep.constants) +
             " constants and " + std::to_string(orep.batchnorms) + " batch norms, fused " + std::to_string(orep.activations) +
             " activations, simplified " + std::to_string(orep.reshapes) + " reshapes");
    {
        const std::string path = prefix + "_optimized_float_model.onnx";
        std::string bytes;
        onnx_io::export_model(optimized).SerializeToString(&bytes);
        io::write_file_atomic(path, bytes);
        artifact("optimized_float_model", path);
    }
    timings["optimized_float_model"] = detail::elapsed_s(t0);

    // ---- 4. calibration ----
    t0 = clock::now();
    const calib::QuantPlan plan = [&] {
        calib::QuantPlan p = calib::make_quant_plan(optimized, cfg);
        for (const auto& cc : colour) fix_colour_conversion(p, optimized, cc);
        return p;
    }();
    std::size_t bpu_nodes = 0;
    for (const auto& kv : plan.nodes) bpu_nodes += kv.second.on_bpu;
    log.line("[4/7] calibration: " + std::to_string(bpu_nodes) + " of " + std::to_string(optimized.nodes.size()) +
             " nodes on the BPU, " + std::to_string(plan.calibrated.size()) + " activations to calibrate");
    for (const auto& note : plan.notes) log.line("  " + note);
    std::vector<io::CalibrationInputSpec> specs;
    bool have_data = true;
    for (std::size_t i = 0; i < model_inputs.size(); ++i) {
        specs.push_back({model_inputs[i], spec_of[i]->cal_data_dir, spec_of[i]->cal_data_type, input_shapes[i]});
        have_data = have_data && !spec_of[i]->cal_data_dir.empty();
    }
    const bool random_data = skip || !have_data;
    const io::CalibrationSet data = [&] {
        io::CalibrationSet set = [&] {
            if (!random_data) return io::CalibrationSet(specs);
            std::vector<bool> pixels;
            for (std::size_t i = 0; i < model_inputs.size(); ++i) pixels.push_back(spec_of[i]->is_image());
            return io::random_calibration_set(specs, pixels, std::max<std::size_t>(1, opt.random_samples));
        }();
        // samples come in the training colour type; the model input takes the runtime one
        for (std::size_t i = 0; i < model_inputs.size(); ++i)
            if (spec_of[i]->is_image() && spec_of[i]->type_rt != spec_of[i]->type_train) {
                const config::InputSpec spec = *spec_of[i];
                set.set_transform(i, [spec](const Tensor& t) { return calibration_sample_to_model_input(t, spec); });
                log.line("  calibration samples of '" + model_inputs[i] + "' (" + spec.type_train + ") converted to " +
                         (spec.type_rt == "nv12" ? std::string("NV12 (YUV444 with 4:2:0 chroma)") : spec.type_rt));
            }
        return set;
    }();
    if (random_data)
        log.line("  calibration samples: " + std::to_string(data.size()) + " RANDOM samples (" +
                 (skip ? std::string("calibration_type skip") : std::string("no cal_data_dir")) +
                 "; image inputs uniform 0..255, feature maps N(0, 1))");
    else
        log.line("  calibration samples: " + std::to_string(data.size()) + " (" + config::join(
                     [&] {
                         std::vector<std::string> d;
                         for (const auto& s : specs) d.push_back(s.dir);
                         return d;
                     }(),
                     ", ") + ")");
    graph::Executor float_exec{graph::Graph(optimized)};
    if (cfg.dump_calibration_data) {
        for (std::size_t s = 0; s < data.size(); ++s)
            for (std::size_t i = 0; i < model_inputs.size(); ++i) {
                const Tensor t = data.load(i, s);
                const std::vector<std::uint8_t> bytes = io::serialize_npy(t);
                io::write_file_atomic((fs::path(cfg.working_dir) / "calibration_data" / model_inputs[i] / (std::to_string(s) + ".npy")).string(),
                                      bytes);
            }
        log.line("  dumped calibration data to " + (fs::path(cfg.working_dir) / "calibration_data").string());
    }
    const bool search = cfg.calibration_type == "default";
    // parameters given by the load source; tensors a QDQ model leaves out are calibrated from data
    std::map<std::string, QParams> loaded;
    std::vector<std::string> to_calibrate = plan.calibrated;
    std::string load_source;
    if (load && !load_qdq) {
        loaded = calib::activations_from_file(cal_file, plan);
        to_calibrate.clear();
        load_source = cfg.calibration_file;
        log.line("  load: " + std::to_string(plan.calibrated.size()) + " activations from " + load_source +
                 (cal_file.method.empty() ? std::string() : " (written by a '" + cal_file.method + "' run)"));
    } else if (load_qdq) {
        calib::QdqActivationMatch m = calib::match_qdq_activations(qdq, plan, optimized);
        loaded = m.activations;
        to_calibrate = m.missing;
        load_source = cfg.onnx_model;
        log.line("  load: " + std::to_string(plan.calibrated.size() - m.missing.size()) + " of " +
                 std::to_string(plan.calibrated.size()) + " activations from the QDQ model");
        std::vector<std::string> calibrated_here;
        for (const auto& t : m.missing)
            if (!plan.tensors.at(t).fixed) calibrated_here.push_back(t);
        if (!calibrated_here.empty())
            log.line("  not quantized in the QDQ model, calibrated here (max, asymmetric): " + config::join(calibrated_here, ", "));
        if (!m.unused.empty()) log.line("  QDQ tensors that run in float here: " + config::join(m.unused, ", "));
        for (const auto& n : m.notes) log.line("  " + n);
    }
    for (const auto& kv : loaded) {  // per-channel parameters only where the program can take them
        if (!kv.second.per_channel()) continue;
        const calib::TensorPlan& tp = plan.tensors.at(plan.root_of(kv.first));
        BPUQ_CHECK(tp.channel_ok && kv.second.axis == 1 &&
                       std::all_of(kv.second.zero_point.begin(), kv.second.zero_point.end(),
                                   [&](std::int32_t z) { return z == kv.second.zero_point[0]; }),
                   "config.load",
                   "config " + cfg.source + ": " + load_source + " quantizes activation '" + kv.first + "' per channel (axis " +
                       std::to_string(kv.second.axis) + "), which the integer program cannot take here: " +
                       (tp.channel_ok ? std::string("per-channel activations need axis 1 and one zero point for all channels")
                                      : tp.channel_reason));
    }
    const bool want_channels = cfg.per_channel || search;
    std::size_t channel_tensors = 0;
    if (want_channels) {
        std::map<std::string, std::size_t> why;  // reasons without node names, counted
        for (const auto& t : plan.calibrated) {
            const calib::TensorPlan& tp = plan.tensors.at(t);
            if (tp.channel_ok) ++channel_tensors;
            std::string r;
            for (std::size_t i = 0, quoted = 0; i < tp.channel_reason.size(); ++i) {
                if (tp.channel_reason[i] == '\'') quoted ^= 1;
                else if (!quoted && !(tp.channel_reason[i] == ' ' && !r.empty() && r.back() == ' ')) r += tp.channel_reason[i];
            }
            if (!tp.channel_ok) ++why[r];
        }
        const std::size_t ok = channel_tensors;
        log.line("  per-channel activations possible for " + std::to_string(ok) + " of " + std::to_string(plan.calibrated.size()) +
                 " tensors (the others stay per tensor; docs/CONVERT.md)");
        for (const auto& kv : why) log.line("    " + std::to_string(kv.second) + " x " + kv.first);
    }
    calib::QuantPlan stats_plan = plan;
    stats_plan.calibrated = to_calibrate;
    calib::CollectOptions copt;
    copt.stats.per_channel = want_channels && !load;
    copt.threads = threads;
    copt.progress = [&](std::size_t d, std::size_t n) { log.progress("  collecting statistics", d, n); };
    const calib::CalibrationStats stats =
        to_calibrate.empty() ? calib::CalibrationStats{} : calib::collect_statistics(float_exec, data, stats_plan, copt);
    timings["statistics"] = detail::elapsed_s(t0);

    calib::CalibChoice choice;
    choice.asymmetric = cfg.optimization.asymmetric;
    choice.percentile = cfg.max_percentile;
    choice.per_channel = cfg.per_channel;
    const std::size_t eval_n = opt.eval_samples ? std::min(opt.eval_samples, data.size()) : data.size();
    std::vector<std::vector<Tensor>> reference;
    auto t_ref = clock::now();
    reference = calib::float_outputs(float_exec, data, eval_n, threads);
    timings["float_reference"] = detail::elapsed_s(t_ref);
    nlohmann::json search_json = nlohmann::json::array();
    MixResult mix;
    if (search) {
        t0 = clock::now();
        std::vector<calib::CalibChoice> cands;
        for (const auto& c : calib::default_search_candidates())
            if ((!c.asymmetric || !cfg.optimization.set_all_nodes_int16) && (!c.per_channel || channel_tensors > 0))
                cands.push_back(c);
        log.line("  default search over " + std::to_string(cands.size()) + " candidates on " + std::to_string(eval_n) + " samples");
        const calib::SearchResult sr = calib::search_choices(optimized, plan, stats, data, reference, cands, threads,
                                                             [&](const calib::ChoiceScore& s) {
                                                                 log.line("    " + detail::pad(s.choice.describe(), 44) +
                                                                          "cosine " + detail::fixed(s.cosine));
                                                             });
        for (const auto& s : sr.scores) search_json.push_back({{"candidate", s.choice.describe()}, {"cosine", s.cosine}});
        choice = sr.scores[sr.best].choice;
        timings["default_search"] = detail::elapsed_s(t0);
    } else if (cfg.calibration_type == "mix") {
        t0 = clock::now();
        MixOptions mopt;
        mopt.asymmetric = cfg.optimization.asymmetric;
        mopt.samples = std::min<std::size_t>(eval_n, 10);
        mopt.threads = threads;
        log.line("  mix: max, max-percentile 0.99995 and kl model-wise, then activation by activation for the sensitive ones");
        mix = mix_calibration(optimized, plan, stats, data, reference, mopt);
        for (const auto& s : mix.model_wise) {
            log.line("    " + detail::pad(s.choice.describe(), 44) + "cosine " + detail::fixed(s.cosine));
            search_json.push_back({{"candidate", s.choice.describe()}, {"cosine", s.cosine}});
        }
        choice = mix.candidates[mix.base];
        timings["mix_search"] = detail::elapsed_s(t0);
    } else if (load || skip) {
        choice.method = CalibMethod::max;
        choice.percentile = 1.0;
        if (load_qdq) choice.asymmetric = true;  // the tensors a QDQ model leaves out (preprocessing): exact for 0..255 data
    } else {
        choice.method = cfg.calibration_type == "kl" ? CalibMethod::kl
                        : cfg.calibration_type == "mse" ? CalibMethod::mse
                        : cfg.calibration_type == "percentile" ? CalibMethod::percentile
                                                               : CalibMethod::max;
        if (choice.method == CalibMethod::percentile && choice.percentile >= 1.0) choice.percentile = 0.99995;
    }
    std::string method = choice.describe();
    if (cfg.calibration_type == "mix") method = "mix (model-wise " + choice.describe() + ", " + std::to_string(mix.rows.size()) + " activations re-chosen)";
    if (load) {
        method = "load (" + load_source + ")";
        log.line("Load calibration parameters from " + load_source + ".");
    } else {
        if (skip) method = "skip (random data, " + choice.describe() + ")";
        log.line(detail::choice_log_lines(choice));
    }
    std::map<std::string, QParams> acts = mix.activations.empty() ? calib::choose_qparams(stats, stats_plan, choice) : mix.activations;
    for (const auto& kv : loaded) acts[kv.first] = kv.second;
    if (!mix.rows.empty()) {  // the merge table
        std::string head = detail::pad("Activation (mix)", 40);
        for (const auto& c : mix.candidates) head += detail::pad(c.describe(), 30);
        log.line(head + "Chosen");
        for (const auto& r : mix.rows) {
            std::string line = detail::pad(r.tensor, 40);
            for (double c : r.cosine) line += detail::pad(detail::fixed(c), 30);
            log.line(line + mix.candidates[r.chosen].describe());
        }
        log.line("  (" + std::to_string(mix.rows.size()) + " sensitive activations re-chosen; cosine = model output with only that "
                 "activation quantized)");
    }
    // int16 nodes' weights are int16 and depend on their input's scale (docs/DECISIONS.md #16)
    std::map<std::string, QParams> weights = calib::quantize_weights(optimized, plan, &acts);
    if (load_qdq) {
        const std::vector<std::string> requantized = calib::use_qdq_weights(qdq, weights);
        log.line("  weights: " + std::to_string(weights.size() - requantized.size()) + " of " + std::to_string(weights.size()) +
                 " keep the QDQ model's integers and scales");
        if (!requantized.empty()) log.line("  weights quantized by bpuq (float in the QDQ model): " + config::join(requantized, ", "));
    }
    // constant operands of BPU Add/Sub/Mul (the mean/scale preprocessing): quantized once, read by
    // the calibrated model, the QDQ model and the program alike (DECISIONS.md #27)
    for (const auto& kv : calib::quantize_constant_operands(optimized, plan, acts)) {
        if (weights.count(kv.first)) continue;
        weights[kv.first] = kv.second;
        const Tensor& c = *optimized.initializer(kv.first);
        log.line("  constant operand " + kv.first + ": int" + std::to_string(kv.second.bits) + " scale " +
                 detail::fixed(kv.second.scale[0], 6) + ", largest error " +
                 detail::fixed(calib::detail::constant_error(c, kv.second), 6) + (calib::detail::constant_error(c, kv.second) == 0.0 ? " (exact)" : ""));
    }

    // a loaded QDQ model is emulated with ONNX QuantizeLinear's rounding (half to even) — see DECISIONS.md
    const Rounding rounding = load_qdq ? Rounding::half_to_even : Rounding::half_away_from_zero;
    if (load_qdq) log.line("  rounding: half to even (ONNX QuantizeLinear), as the QDQ model computes");

    // ---- bias correction (the corrected biases feed the calibrated model, the QDQ model and the program) ----
    graph::Graph quant_graph = optimized;
    std::map<std::string, std::vector<float>> corrected;
    nlohmann::json bias_json = nullptr;
    if (!cal_file.biases.empty()) {
        corrected = cal_file.biases;
        calib::apply_biases(quant_graph, corrected, "calibration file " + cal_file.path);
        log.line("  bias_correction: " + std::to_string(corrected.size()) + " corrected biases taken from " + cal_file.path);
        bias_json = {{"source", cal_file.path}, {"layers", corrected.size()}};
    } else if (cfg.optimization.bias_correction) {
        t0 = clock::now();
        calib::BiasCorrectionOptions bopt;
        bopt.max_samples = opt.bias_correction_samples;
        bopt.threads = threads;
        bopt.rounding = rounding;
        bopt.progress = [&](std::size_t d, std::size_t n) { log.progress("  bias correction, level", d, n); };
        const calib::BiasCorrectionResult bc = calib::correct_biases(optimized, plan, acts, weights, data, bopt);
        corrected = bc.biases;
        calib::apply_biases(quant_graph, corrected, "bias correction");
        nlohmann::json layers = nlohmann::json::array();
        for (const auto& l : bc.layers)
            layers.push_back({{"node", l.node}, {"channels", l.channels}, {"max_abs_shift", l.max_abs_shift},
                              {"mean_abs_shift", l.mean_abs_shift}, {"worst_channel", l.worst_channel},
                              {"bias_step", l.bias_scale}});
        const std::size_t big = bc.largest();
        std::string line = "  bias_correction: corrected " + std::to_string(bc.layers.size()) + " Conv/Gemm layers (" +
                           std::to_string(bc.levels) + " levels) on " + std::to_string(bc.samples) + " calibration samples";
        if (big < bc.layers.size()) {
            const auto& l = bc.layers[big];
            line += "; largest shift " + detail::fixed(l.max_abs_shift) + " (node " + l.node + ", channel " +
                    std::to_string(l.worst_channel) + ", " + detail::fixed(l.bias_scale > 0 ? l.max_abs_shift / l.bias_scale : 0.0, 1) +
                    " int32 bias steps)";
        }
        log.line(line);
        bias_json = {{"samples", bc.samples}, {"levels", bc.levels}, {"layers", layers}};
        timings["bias_correction"] = detail::elapsed_s(t0);
    }

    // ---- 5. calibrated and quantized (QDQ) models ----
    t0 = clock::now();
    log.line("[5/7] calibrated and quantized models");
    graph::Graph calibrated = calib::make_calibrated_graph(optimized, plan, acts, weights, method, rounding, corrected);
    {
        const std::string path = prefix + "_calibrated_model.onnx";
        std::string bytes;
        onnx_io::export_model(calibrated).SerializeToString(&bytes);
        io::write_file_atomic(path, bytes);
        artifact("calibrated_model", path);
        io::write_file_atomic(prefix + "_calibration.json", calib::calibration_file_json(method, acts, corrected).dump(1));
        artifact("calibration_parameters", prefix + "_calibration.json");
    }
    const std::string qdq_why = calib::qdq_unsupported_reason(plan, acts, &quant_graph);
    if (qdq_why.empty()) {
        const graph::Graph qdq_model = calib::make_qdq_graph(quant_graph, plan, acts, weights);
        const std::string path = prefix + "_quantized_model.onnx";
        std::string bytes;
        onnx_io::export_model(qdq_model).SerializeToString(&bytes);
        io::write_file_atomic(path, bytes);
        artifact("quantized_model", path);
    } else {
        log.line("  quantized_model.onnx not written: " + qdq_why);
    }
    timings["calibrated_models"] = detail::elapsed_s(t0);

    // ---- 6. integer program ----
    t0 = clock::now();
    log.line("[6/7] integer program");
    emul::Program program = emul::lower_to_program(quant_graph, plan, acts, weights, rounding);
    program.metadata["source_model"] = cfg.onnx_model;
    program.metadata["calibration"] = method;
    for (std::size_t i = 0; i < model_inputs.size(); ++i) {  // what the device feeds (emul/runtime_input.hpp)
        const std::string key = "input." + model_inputs[i] + ".";
        program.metadata[key + "type_rt"] = spec_of[i]->type_rt;
        program.metadata[key + "layout_rt"] = spec_of[i]->layout_rt;
        program.metadata[key + "type_train"] = spec_of[i]->type_train;
        program.metadata[key + "layout_train"] = spec_of[i]->layout_train;
        program.metadata[key + "space_and_range"] = spec_of[i]->space_and_range;
    }
    {
        const std::vector<std::uint8_t> bytes = emul::serialize_program(program);
        io::write_file_atomic(prefix + ".bpuq", bytes);
        artifact("integer_program", prefix + ".bpuq");
        log.line("  " + std::to_string(program.nodes.size()) + " program nodes, " + std::to_string(bytes.size()) + " bytes");
    }
    timings["integer_program"] = detail::elapsed_s(t0);

    // ---- 7. evaluation: node table (calibrated vs float, accumulated) and output table (integer vs float) ----
    t0 = clock::now();
    log.line("[7/7] evaluation on " + std::to_string(eval_n) + (random_data ? " RANDOM samples" : " calibration samples"));
    graph::Executor cal_exec{graph::Graph(calibrated)};
    emul::ProgramExecutor int_exec(program, {1, true});
    std::map<std::string, ErrorAccumulator> node_err;
    std::vector<ErrorAccumulator> out_err(optimized.outputs.size());
    std::mutex mu;
    calib::for_each_sample(eval_n, threads, [&](int, std::size_t s, const graph::ExecContext& ctx) {
        const std::vector<Tensor> in = data.load_sample(s);
        std::map<std::string, Tensor> fl, ca;
        float_exec.run(in, ctx, [&](const graph::Node& n, const std::vector<Tensor>& outs) {
            for (std::size_t k = 0; k < outs.size(); ++k)
                if (outs[k].dtype() == DType::float32) fl[n.outputs[k]] = outs[k];
        });
        cal_exec.run(in, ctx, [&](const graph::Node& n, const std::vector<Tensor>& outs) {
            for (std::size_t k = 0; k < outs.size(); ++k)
                if (outs[k].dtype() == DType::float32) ca[n.outputs[k]] = outs[k];
        });
        const std::vector<Tensor> y = int_exec.run(in);
        std::lock_guard<std::mutex> lock(mu);
        for (const auto& kv : fl) {
            auto it = ca.find(kv.first);
            if (it != ca.end() && it->second.shape() == kv.second.shape()) node_err[kv.first].add(compare(kv.second, it->second));
        }
        for (std::size_t k = 0; k < y.size(); ++k) {
            // integer outputs (set_model_output_int8/int16) are compared dequantized
            const emul::ProgramTensor& pt = program.tensors[std::size_t(program.outputs[k])];
            const Tensor yf = y[k].dtype() == DType::float32 ? y[k]
                              : pt.quant.bits == 8 || pt.quant.bits == 16 ? dequantize_tensor(y[k], emul::qparams_of(pt))
                                                                           : io::to_float32(y[k]);
            out_err[k].add(compare(reference[s][k], yf));
        }
    });
    log.line("");
    log.line(detail::pad("Node", 40) + detail::pad("ON", 5) + detail::pad("Type", 20) + detail::pad("Cosine Similarity", 19) +
             detail::pad("Threshold", 14) + "DataType");
    nlohmann::json nodes = nlohmann::json::array();
    for (const auto& n : optimized.nodes) {
        const auto& np = plan.nodes.at(n.name);
        const std::string out = n.outputs.empty() ? std::string() : n.outputs[0];
        auto e = node_err.find(out);
        const double cos = e == node_err.end() ? 1.0 : e->second.mean().cosine;
        std::string thr = "--", dtype = "float";
        auto tp = plan.tensors.find(out);
        if (tp != plan.tensors.end() && tp->second.quantized && acts.count(out)) {
            const QParams& q = acts.at(out);
            // the calibrated threshold: scale * qmax when symmetric, else the larger end of [min, max]
            // (per channel: the largest channel's; the zero point is shared)
            const float s_max = *std::max_element(q.scale.begin(), q.scale.end());
            thr = detail::fixed(q.zero_point[0] == 0 ? s_max * float(q.qmax())
                                                     : std::max(s_max * float(q.qmax() - q.zero_point[0]),
                                                                s_max * float(q.zero_point[0] - q.qmin())),
                                6);
            dtype = q.bits == 16 ? "int16" : "int8";
            if (q.per_channel()) dtype += " per-channel";
            if (tp->second.float_output && np.on_bpu && calib::dequantizes_accumulator(n.op_type)) {
                thr = "--";
                dtype = "int32->float";
            }
        }
        log.line(detail::pad(n.name, 40) + detail::pad(np.on_bpu ? "BPU" : "CPU", 5) + detail::pad(n.op_type, 20) +
                 detail::pad(detail::fixed(cos), 19) + detail::pad(thr, 14) + dtype);
        nodes.push_back({{"node", n.name}, {"on", np.on_bpu ? "BPU" : "CPU"}, {"type", n.op_type}, {"cosine_similarity", cos},
                         {"threshold", thr}, {"data_type", dtype}, {"reason", np.reason}});
    }
    log.line("");
    log.line(detail::pad("Output", 30) + detail::pad("Cosine Similarity", 19) + detail::pad("L1 Distance", 14) +
             detail::pad("L2 Distance", 14) + "Chebyshev Distance");
    nlohmann::json outputs = nlohmann::json::array();
    for (std::size_t k = 0; k < optimized.outputs.size(); ++k) {
        const ErrorStats m = out_err[k].mean();
        log.line(detail::pad(optimized.outputs[k], 30) + detail::pad(detail::fixed(m.cosine), 19) + detail::pad(detail::fixed(m.l1), 14) +
                 detail::pad(detail::fixed(m.l2), 14) + detail::fixed(m.chebyshev));
        outputs.push_back({{"output", optimized.outputs[k]}, {"cosine_similarity", m.cosine}, {"l1", m.l1}, {"l2", m.l2},
                           {"chebyshev", m.chebyshev}, {"sqnr_db", m.sqnr_db}});
    }
    log.line("(integer program vs float model; L1 = mean |x - y|, L2 = sqrt(sum (x - y)^2) / n, Chebyshev = max |x - y|)");
    timings["evaluation"] = detail::elapsed_s(t0);
    timings["total"] = detail::elapsed_s(t_start);
    log.line("");
    log.line("stage timings (s):");
    for (auto it = timings.begin(); it != timings.end(); ++it) log.line("  " + detail::pad(it.key(), 24) + detail::fixed(it.value().get<double>(), 3));

    rep["config"] = config::to_json(cfg);
    rep["calibration"] = {{"method", method}, {"samples", data.size()}, {"search", search_json},
                          {"method_name", load ? "load" : skip ? "skip" : calib_method_name(choice.method)},
                          {"max_percentile", choice.percentile}, {"per_channel", choice.per_channel},
                          {"asymmetric", choice.asymmetric}, {"random_data", random_data}, {"bias_correction", bias_json}};
    if (load) rep["calibration"]["source"] = load_source;
    if (skip) rep["calibration"]["warning"] = skip_warning;
    rep["nodes"] = nodes;
    rep["outputs"] = outputs;
    rep["timings_s"] = timings;
    rep["threads"] = threads;
    const std::string log_path = prefix + "_convert.log", report_path = (fs::path(cfg.working_dir) / "report.json").string();
    result.artifacts["log"] = log_path;
    result.artifacts["report"] = report_path;
    rep["artifacts"] = result.artifacts;
    if (skip) log.line(skip_warning);
    log.line("  wrote " + log_path);
    log.line("  wrote " + report_path);
    io::write_file_atomic(log_path, log.text());
    io::write_file_atomic(report_path, rep.dump(2));
    return result;
}

}  // namespace flow
BPUQ_NAMESPACE_END
