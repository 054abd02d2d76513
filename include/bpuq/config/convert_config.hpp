// The Horizon-compatible conversion config (SPEC §1.1): JSON -> typed, validated ConvertConfig.
//
// YAML configs are read by the drivers into the same JSON (examples/support/yaml_json.hpp), so
// this parser is the single place where keys, types, ranges and allowed combinations are checked.
// Every error names the config file, the key, the value and what is allowed.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../core/error.hpp"
#include "text.hpp"

BPUQ_NAMESPACE_BEGIN
namespace config {

/// Per-node overrides from model_parameters.node_info.
struct NodeInfo {
    std::string on;                       ///< "" (unchanged), "BPU" or "CPU"
    std::map<int, int> input_bits;        ///< input index (-1 = all inputs) -> 8 or 16
    int output_bits = 0;                  ///< 0 = unchanged, else 8 or 16
};

/// One model input as described by input_parameters (and its calibration data).
struct InputSpec {
    std::string name;                     ///< "" = the model's only input
    std::vector<std::int64_t> shape;      ///< empty = from the model
    int batch = 0;                        ///< 0 = unset
    std::string type_train = "featuremap";
    std::string layout_train = "NCHW";
    std::string type_rt = "featuremap";
    std::string layout_rt = "NCHW";
    std::string space_and_range = "regular";
    std::string norm_type = "no_preprocess";
    std::vector<float> mean;              ///< empty = none
    std::vector<float> scale;             ///< empty = none (scale multiplies)
    std::string cal_data_dir;             ///< resolved against the config's folder
    std::string cal_data_type;            ///< float32 | uint8 | int8 | int16 | int32

    bool is_image() const { return type_train != "featuremap"; }
};

/// The `optimization` list of calibration_parameters.
struct Optimization {
    bool set_all_nodes_int16 = false;
    bool set_model_output_int8 = false;
    bool set_model_output_int16 = false;
    bool softmax_input_int8 = false;
    bool softmax_output_int8 = false;
    bool asymmetric = false;
    bool bias_correction = false;
    std::set<std::string> input_int16_ops;   ///< from set_<OpType>_input_int16
    std::set<std::string> output_int16_ops;  ///< from set_<OpType>_output_int16
    std::vector<std::string> items;          ///< as written, for the log
};

struct ConvertConfig {
    std::string source;    ///< config file name, for messages
    std::string base_dir;  ///< folder relative paths are resolved against

    // model_parameters
    std::string onnx_model;
    std::string march = "bayes-e";
    std::string output_model_file_prefix;
    std::string working_dir = "model_output";
    std::vector<std::string> output_nodes;
    bool layer_out_dump = false;
    std::vector<std::string> remove_node_type;
    std::vector<std::string> remove_node_name;
    bool dump_calibration_data = false;
    std::map<std::string, NodeInfo> node_info;

    // input_parameters
    std::vector<InputSpec> inputs;

    // calibration_parameters
    std::string calibration_type = "default";
    std::string calibration_file;  ///< for calibration_type: load (JSON thresholds); "" = QDQ scales of the model
    double max_percentile = 1.0;
    bool per_channel = false;
    std::vector<std::string> run_on_cpu;
    std::vector<std::string> run_on_bpu;
    Optimization optimization;

    // compiler_parameters: accepted and recorded, no effect on the emulation
    nlohmann::json compiler_parameters = nlohmann::json::object();

    bool int16_allowed() const { return march != "bernoulli2"; }
};

// ---- the schema -------------------------------------------------------------------------

inline const std::vector<std::string>& group_names() {
    static const std::vector<std::string> g{"model_parameters", "input_parameters", "calibration_parameters",
                                            "compiler_parameters"};
    return g;
}

inline const std::vector<std::string>& keys_of(const std::string& group) {
    static const std::map<std::string, std::vector<std::string>> keys{
        {"model_parameters",
         {"onnx_model", "march", "output_model_file_prefix", "working_dir", "output_nodes", "layer_out_dump",
          "remove_node_type", "remove_node_name", "debug_mode", "node_info"}},
        {"input_parameters",
         {"input_name", "input_shape", "input_batch", "input_type_train", "input_layout_train", "input_type_rt",
          "input_layout_rt", "input_space_and_range", "norm_type", "mean_value", "scale_value"}},
        {"calibration_parameters",
         {"cal_data_dir", "cal_data_type", "calibration_type", "calibration_file", "max_percentile", "per_channel",
          "run_on_cpu", "run_on_bpu", "optimization"}},
        {"compiler_parameters",
         {"compile_mode", "optimize_level", "core_num", "debug", "input_source", "max_time_per_fc", "jobs",
          "balance_factor", "advice"}},
    };
    return keys.at(group);
}

namespace detail {

class Reader {
public:
    Reader(std::string source) : source_(std::move(source)) {}

    [[noreturn]] void fail(const std::string& id, const std::string& where, const std::string& what) const {
        BPUQ_THROW("config." + id, "config " + source_ + ": " + where + ": " + what);
#if !BPUQ_HAS_EXCEPTIONS
        std::abort();
#endif
    }

    void check_keys(const nlohmann::json& obj, const std::vector<std::string>& allowed, const std::string& where) const {
        if (!obj.is_object()) fail("type", where, "must be a mapping of keys to values, got " + type_of(obj));
        for (auto it = obj.begin(); it != obj.end(); ++it) {
            if (std::find(allowed.begin(), allowed.end(), it.key()) != allowed.end()) continue;
            const std::string near = nearest(it.key(), allowed);
            fail("unknown_key", where + "." + it.key(),
                 "unknown key" + (near.empty() ? std::string() : "; did you mean '" + near + "'?") +
                     " Allowed keys: " + join(allowed, ", "));
        }
    }

    static std::string type_of(const nlohmann::json& j) {
        return j.is_string() ? "a string" : j.is_boolean() ? "a boolean" : j.is_number() ? "a number"
               : j.is_array() ? "a list" : j.is_object() ? "a mapping" : "null";
    }

    std::string as_string(const nlohmann::json& j, const std::string& where) const {
        if (j.is_string()) return trim(j.get<std::string>());
        if (j.is_number_integer()) return std::to_string(j.get<long long>());
        if (j.is_number()) return j.dump();
        fail("type", where, "expected a string, got " + type_of(j) + " (" + j.dump() + ")");
    }

    bool as_bool(const nlohmann::json& j, const std::string& where) const {
        if (j.is_boolean()) return j.get<bool>();
        if (j.is_number_integer() && (j.get<long long>() == 0 || j.get<long long>() == 1)) return j.get<long long>() == 1;
        if (j.is_string()) {
            std::string s = trim(j.get<std::string>());
            for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            if (s == "true" || s == "yes" || s == "on" || s == "1") return true;
            if (s == "false" || s == "no" || s == "off" || s == "0") return false;
        }
        fail("type", where, "expected true or false, got " + j.dump());
    }

    double as_number(const nlohmann::json& j, const std::string& where) const {
        if (j.is_number()) return j.get<double>();
        if (j.is_string()) {
            const std::string s = trim(j.get<std::string>());
            char* end = nullptr;
            const double v = std::strtod(s.c_str(), &end);
            if (!s.empty() && end && *end == '\0') return v;
        }
        fail("type", where, "expected a number, got " + j.dump());
    }

    /// A ';'-separated list (or a YAML/JSON list) of strings.
    std::vector<std::string> as_list(const nlohmann::json& j, const std::string& where, const std::string& seps = ";") const {
        std::vector<std::string> out;
        if (j.is_array()) {
            for (std::size_t i = 0; i < j.size(); ++i) out.push_back(as_string(j[i], where + "[" + std::to_string(i) + "]"));
            return out;
        }
        return split(as_string(j, where), seps);
    }

    /// Numbers separated by spaces or commas: "123.675 116.28 103.53", or a single number, or a list.
    std::vector<float> as_floats(const nlohmann::json& j, const std::string& where) const {
        std::vector<float> out;
        if (j.is_number()) return {static_cast<float>(j.get<double>())};
        if (j.is_array()) {
            for (std::size_t i = 0; i < j.size(); ++i)
                out.push_back(static_cast<float>(as_number(j[i], where + "[" + std::to_string(i) + "]")));
        } else {
            for (const auto& item : split(as_string(j, where), " ,\t"))
                out.push_back(static_cast<float>(as_number(nlohmann::json(item), where)));
        }
        for (float v : out)
            if (!std::isfinite(v)) fail("value", where, "value " + std::to_string(v) + " is not finite");
        return out;
    }

    std::string one_of(const std::string& value, const std::vector<std::string>& allowed, const std::string& where) const {
        if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return value;
        const std::string near = nearest(value, allowed);
        fail("value", where,
             "'" + value + "' is not allowed" + (near.empty() ? std::string() : " (did you mean '" + near + "'?)") +
                 "; allowed: " + join(allowed, ", "));
    }

    const std::string& source() const { return source_; }

private:
    std::string source_;
};

inline std::string resolve_path(const std::string& base, const std::string& p) {
    if (p.empty() || p[0] == '/' || base.empty()) return p;
    return base + "/" + p;
}

inline int parse_bits(const Reader& r, const std::string& v, const std::string& where) {
    return r.one_of(v, {"int8", "int16"}, where) == "int16" ? 16 : 8;
}

}  // namespace detail

/// Parses and validates a config. `source` names the file in messages; relative paths
/// (onnx_model, working_dir, cal_data_dir, calibration_file) are resolved against `base_dir`.
inline ConvertConfig parse_convert_config(const nlohmann::json& root, const std::string& source,
                                          const std::string& base_dir = "") {
    detail::Reader r(source);
    ConvertConfig c;
    c.source = source;
    c.base_dir = base_dir;
    r.check_keys(root, group_names(), "top level");
    auto group = [&](const char* name) -> nlohmann::json {
        if (!root.contains(name)) return nlohmann::json::object();
        const auto& g = root.at(name);
        if (g.is_null()) return nlohmann::json::object();
        r.check_keys(g, keys_of(name), name);
        return g;
    };

    // ---- model_parameters ----
    const nlohmann::json mp = group("model_parameters");
    const std::string M = "model_parameters.";
    if (!mp.contains("onnx_model")) r.fail("missing", M + "onnx_model", "required: the path of the float ONNX model");
    c.onnx_model = detail::resolve_path(base_dir, r.as_string(mp.at("onnx_model"), M + "onnx_model"));
    if (!mp.contains("output_model_file_prefix"))
        r.fail("missing", M + "output_model_file_prefix", "required: the name prefix of every artifact");
    c.output_model_file_prefix = r.as_string(mp.at("output_model_file_prefix"), M + "output_model_file_prefix");
    if (c.output_model_file_prefix.empty() || c.output_model_file_prefix.find('/') != std::string::npos)
        r.fail("value", M + "output_model_file_prefix",
               "'" + c.output_model_file_prefix + "' must be a non-empty file name prefix without '/'");
    if (mp.contains("march"))
        c.march = r.one_of(r.as_string(mp.at("march"), M + "march"), {"bernoulli2", "bayes", "bayes-e"}, M + "march");
    c.working_dir = detail::resolve_path(
        base_dir, mp.contains("working_dir") ? r.as_string(mp.at("working_dir"), M + "working_dir") : c.working_dir);
    if (mp.contains("output_nodes")) c.output_nodes = r.as_list(mp.at("output_nodes"), M + "output_nodes");
    if (mp.contains("layer_out_dump")) c.layer_out_dump = r.as_bool(mp.at("layer_out_dump"), M + "layer_out_dump");
    if (mp.contains("remove_node_type")) {
        c.remove_node_type = r.as_list(mp.at("remove_node_type"), M + "remove_node_type", ";, ");
        for (const auto& t : c.remove_node_type)
            r.one_of(t, {"Quantize", "Dequantize", "Transpose", "Cast", "Reshape"}, M + "remove_node_type");
    }
    if (mp.contains("remove_node_name")) c.remove_node_name = r.as_list(mp.at("remove_node_name"), M + "remove_node_name");
    if (mp.contains("debug_mode")) {
        for (const auto& m : r.as_list(mp.at("debug_mode"), M + "debug_mode", ";, "))
            if (r.one_of(m, {"dump_calibration_data"}, M + "debug_mode") == "dump_calibration_data")
                c.dump_calibration_data = true;
    }
    if (mp.contains("node_info")) {
        const auto& ni = mp.at("node_info");
        const std::string W = M + "node_info";
        if (ni.is_string()) {  // short form "node1:int16;node2:int16"
            for (const auto& item : split(ni.get<std::string>(), ";")) {
                const auto parts = split(item, ":", true);
                if (parts.size() != 2 || parts[0].empty())
                    r.fail("value", W, "'" + item + "' is not of the form <node>:int16 (or <node>:int8)");
                NodeInfo info;
                const int bits = detail::parse_bits(r, parts[1], W + "." + parts[0]);
                info.input_bits[-1] = bits;
                info.output_bits = bits;
                c.node_info[parts[0]] = info;
            }
        } else if (ni.is_object()) {
            for (auto it = ni.begin(); it != ni.end(); ++it) {
                const std::string where = W + "." + it.key();
                if (!it.value().is_object()) r.fail("type", where, "must be a mapping like {ON: CPU} or {InputType: int16}");
                NodeInfo info;
                for (auto f = it.value().begin(); f != it.value().end(); ++f) {
                    const std::string fw = where + "." + f.key();
                    static const std::regex input_n("InputType([0-9]+)");
                    std::smatch m;
                    const std::string key = f.key();
                    if (key == "ON") {
                        info.on = r.one_of(r.as_string(f.value(), fw), {"BPU", "CPU"}, fw);
                    } else if (key == "InputType") {
                        info.input_bits[-1] = detail::parse_bits(r, r.as_string(f.value(), fw), fw);
                    } else if (std::regex_match(key, m, input_n)) {
                        info.input_bits[std::stoi(m[1].str())] = detail::parse_bits(r, r.as_string(f.value(), fw), fw);
                    } else if (key == "OutputType") {
                        info.output_bits = detail::parse_bits(r, r.as_string(f.value(), fw), fw);
                    } else {
                        const std::string near = nearest(key, {"ON", "InputType", "InputType0", "OutputType"});
                        r.fail("unknown_key", fw,
                               "unknown key" + (near.empty() ? std::string() : "; did you mean '" + near + "'?") +
                                   " Allowed: ON, InputType, InputType<N>, OutputType");
                    }
                }
                c.node_info[it.key()] = info;
            }
        } else {
            r.fail("type", W, "must be a mapping of node names or a string \"node1:int16;node2:int16\"");
        }
    }

    // ---- input_parameters ----
    const nlohmann::json ip = group("input_parameters");
    const std::string I = "input_parameters.";
    std::vector<std::string> names;
    if (ip.contains("input_name")) names = r.as_list(ip.at("input_name"), I + "input_name");
    const std::size_t n_inputs = names.empty() ? 1 : names.size();
    c.inputs.assign(n_inputs, InputSpec{});
    for (std::size_t i = 0; i < names.size(); ++i) c.inputs[i].name = names[i];
    // per-input values: "a;b" with exactly one entry per input
    auto per_input = [&](const char* key) -> std::vector<std::string> {
        if (!ip.contains(key)) return {};
        std::vector<std::string> v = r.as_list(ip.at(key), I + key);
        if (v.size() != n_inputs)
            r.fail("value", I + key,
                   "has " + std::to_string(v.size()) + " value(s) separated by ';' but there " +
                       (n_inputs == 1 ? "is 1 input" : "are " + std::to_string(n_inputs) + " inputs") +
                       " (input_name order)");
        return v;
    };
    auto per_input_raw = [&](const char* key) -> std::vector<nlohmann::json> {
        // mean_value/scale_value may be numbers or lists; only strings carry ';'
        if (!ip.contains(key)) return {};
        const auto& j = ip.at(key);
        if (!j.is_string() || n_inputs == 1) return std::vector<nlohmann::json>{j};
        std::vector<nlohmann::json> out;
        for (const auto& s : split(j.get<std::string>(), ";", /*keep_empty=*/true)) out.emplace_back(s);
        if (out.size() != n_inputs)
            r.fail("value", I + key, "has " + std::to_string(out.size()) + " value(s) separated by ';' for " +
                                         std::to_string(n_inputs) + " inputs");
        return out;
    };
    const auto shapes = per_input("input_shape");
    const auto batches = per_input("input_batch");
    const auto type_train = per_input("input_type_train");
    const auto layout_train = per_input("input_layout_train");
    const auto type_rt = per_input("input_type_rt");
    const auto layout_rt = per_input("input_layout_rt");
    const auto space = per_input("input_space_and_range");
    const auto norm = per_input("norm_type");
    const auto means = per_input_raw("mean_value");
    const auto scales = per_input_raw("scale_value");
    for (std::size_t i = 0; i < n_inputs; ++i) {
        InputSpec& in = c.inputs[i];
        const std::string tag = n_inputs > 1 ? " (input " + std::to_string(i) + " '" + in.name + "')" : "";
        if (!shapes.empty()) {
            for (const auto& d : split(shapes[i], "x")) {
                char* end = nullptr;
                const long long v = std::strtoll(d.c_str(), &end, 10);
                if (d.empty() || *end != '\0' || v <= 0 || v > (1LL << 31))
                    r.fail("value", I + "input_shape" + tag, "'" + shapes[i] + "' is not a shape like 1x3x224x224");
                in.shape.push_back(v);
            }
        }
        if (!batches.empty()) {
            const double b = r.as_number(nlohmann::json(batches[i]), I + "input_batch" + tag);
            if (b < 1 || b != std::floor(b) || b > 4096)
                r.fail("value", I + "input_batch" + tag, "'" + batches[i] + "' must be an integer in [1, 4096]");
            in.batch = static_cast<int>(b);
        }
        if (type_train.empty()) r.fail("missing", I + "input_type_train" + tag, "required: rgb, bgr, yuv444, gray or featuremap");
        if (type_rt.empty()) r.fail("missing", I + "input_type_rt" + tag, "required: nv12, yuv444, rgb, bgr, gray or featuremap");
        in.type_train = r.one_of(type_train[i], {"rgb", "bgr", "yuv444", "gray", "featuremap"}, I + "input_type_train" + tag);
        in.type_rt = r.one_of(type_rt[i], {"nv12", "yuv444", "rgb", "bgr", "gray", "featuremap"}, I + "input_type_rt" + tag);
        static const std::map<std::string, std::vector<std::string>> allowed_rt{
            {"yuv444", {"nv12", "yuv444"}},
            {"rgb", {"nv12", "yuv444", "rgb", "bgr"}},
            {"bgr", {"nv12", "yuv444", "rgb", "bgr"}},
            {"gray", {"gray"}},
            {"featuremap", {"featuremap"}}};
        const auto& ok = allowed_rt.at(in.type_train);
        if (std::find(ok.begin(), ok.end(), in.type_rt) == ok.end())
            r.fail("value", I + "input_type_rt" + tag,
                   "'" + in.type_rt + "' cannot feed a model trained on '" + in.type_train + "'; with input_type_train " +
                       in.type_train + " the runtime type must be one of: " + join(ok, ", "));
        in.layout_train = layout_train.empty() ? "NCHW" : r.one_of(layout_train[i], {"NCHW", "NHWC"}, I + "input_layout_train" + tag);
        const std::string default_rt = in.is_image() ? "NHWC" : in.layout_train;
        in.layout_rt = layout_rt.empty() ? default_rt : r.one_of(layout_rt[i], {"NCHW", "NHWC"}, I + "input_layout_rt" + tag);
        if (in.type_rt == "nv12") in.layout_rt = "NHWC";  // nv12 is a planar byte stream; layout is moot
        in.space_and_range = space.empty() ? "regular"
                                           : r.one_of(space[i], {"regular", "bt601_video"}, I + "input_space_and_range" + tag);
        if (in.space_and_range == "bt601_video" && in.type_rt != "nv12")
            r.fail("value", I + "input_space_and_range" + tag, "bt601_video applies only to input_type_rt nv12, not '" + in.type_rt + "'");
        in.norm_type = norm.empty() ? "no_preprocess"
                                    : r.one_of(norm[i], {"no_preprocess", "data_mean", "data_scale", "data_mean_and_scale"},
                                               I + "norm_type" + tag);
        const bool wants_mean = in.norm_type == "data_mean" || in.norm_type == "data_mean_and_scale";
        const bool wants_scale = in.norm_type == "data_scale" || in.norm_type == "data_mean_and_scale";
        if (!means.empty()) in.mean = r.as_floats(means[i], I + "mean_value" + tag);
        if (!scales.empty()) in.scale = r.as_floats(scales[i], I + "scale_value" + tag);
        if (wants_mean && in.mean.empty()) r.fail("missing", I + "mean_value" + tag, "norm_type " + in.norm_type + " needs mean_value");
        if (wants_scale && in.scale.empty()) r.fail("missing", I + "scale_value" + tag, "norm_type " + in.norm_type + " needs scale_value");
        if (!wants_mean && !in.mean.empty())
            r.fail("value", I + "mean_value" + tag, "is given but norm_type is " + in.norm_type +
                                                        " (use data_mean or data_mean_and_scale, or remove mean_value)");
        if (!wants_scale && !in.scale.empty())
            r.fail("value", I + "scale_value" + tag, "is given but norm_type is " + in.norm_type +
                                                         " (use data_scale or data_mean_and_scale, or remove scale_value)");
        const std::size_t channels = in.type_train == "gray" ? 1 : (in.is_image() ? 3 : 0);
        for (const auto* v : {&in.mean, &in.scale}) {
            const char* key = v == &in.mean ? "mean_value" : "scale_value";
            if (!v->empty() && channels && v->size() != 1 && v->size() != channels)
                r.fail("value", I + key + tag, "has " + std::to_string(v->size()) + " values; " + in.type_train +
                                                   " input needs 1 or " + std::to_string(channels));
        }
        for (float s : in.scale)
            if (s == 0.0f) r.fail("value", I + "scale_value" + tag, "0 would erase the input (scale multiplies: y = (x - mean) * scale)");
    }

    // ---- calibration_parameters ----
    const nlohmann::json cp = group("calibration_parameters");
    const std::string C = "calibration_parameters.";
    if (cp.contains("calibration_type"))
        c.calibration_type = r.one_of(r.as_string(cp.at("calibration_type"), C + "calibration_type"),
                                      {"default", "mix", "kl", "max", "mse", "percentile", "load", "skip"}, C + "calibration_type");
    if (cp.contains("calibration_file")) {
        if (c.calibration_type != "load")
            r.fail("value", C + "calibration_file", "is only read by calibration_type: load (it is '" + c.calibration_type + "')");
        c.calibration_file = detail::resolve_path(base_dir, r.as_string(cp.at("calibration_file"), C + "calibration_file"));
    }
    if (cp.contains("max_percentile")) {
        c.max_percentile = r.as_number(cp.at("max_percentile"), C + "max_percentile");
        if (!(c.max_percentile >= 0.5 && c.max_percentile <= 1.0))
            r.fail("value", C + "max_percentile", cp.at("max_percentile").dump() + " is outside [0.5, 1.0]");
    }
    if (cp.contains("per_channel")) c.per_channel = r.as_bool(cp.at("per_channel"), C + "per_channel");
    if (cp.contains("run_on_cpu")) c.run_on_cpu = r.as_list(cp.at("run_on_cpu"), C + "run_on_cpu");
    if (cp.contains("run_on_bpu")) c.run_on_bpu = r.as_list(cp.at("run_on_bpu"), C + "run_on_bpu");
    const bool needs_data = c.calibration_type != "skip" && c.calibration_type != "load";
    if (cp.contains("cal_data_dir")) {
        const auto dirs = r.as_list(cp.at("cal_data_dir"), C + "cal_data_dir");
        if (dirs.size() != n_inputs)
            r.fail("value", C + "cal_data_dir", "has " + std::to_string(dirs.size()) + " folder(s) for " +
                                                    std::to_string(n_inputs) + " input(s); separate them with ';'");
        for (std::size_t i = 0; i < n_inputs; ++i) c.inputs[i].cal_data_dir = detail::resolve_path(base_dir, dirs[i]);
    } else if (needs_data) {
        r.fail("missing", C + "cal_data_dir", "required for calibration_type " + c.calibration_type +
                                                  " (one folder of preprocessed samples per input)");
    }
    std::vector<std::string> dtypes;
    if (cp.contains("cal_data_type")) {
        dtypes = r.as_list(cp.at("cal_data_type"), C + "cal_data_type");
        if (dtypes.size() != n_inputs && dtypes.size() != 1)
            r.fail("value", C + "cal_data_type", "needs one type or one per input");
    }
    for (std::size_t i = 0; i < n_inputs; ++i) {
        auto& in = c.inputs[i];
        if (!dtypes.empty()) {
            in.cal_data_type = r.one_of(dtypes[dtypes.size() == 1 ? 0 : i], {"float32", "uint8", "int8", "int16", "int32"},
                                        C + "cal_data_type");
        } else {  // Horizon's rule: a folder name ending in _f32 holds float32 files, else uint8
            std::string dir = in.cal_data_dir;
            while (!dir.empty() && dir.back() == '/') dir.pop_back();
            in.cal_data_type = (dir.size() >= 4 && dir.compare(dir.size() - 4, 4, "_f32") == 0) ? "float32" : "uint8";
        }
    }
    if (cp.contains("optimization")) {
        auto& o = c.optimization;
        o.items = r.as_list(cp.at("optimization"), C + "optimization", ",; ");
        static const std::regex op_int16("set_([A-Za-z][A-Za-z0-9]*)_(input|output)_int16");
        static const std::vector<std::string> fixed{"set_all_nodes_int16", "set_model_output_int8", "set_model_output_int16",
                                                    "set_Softmax_input_int8", "set_Softmax_output_int8", "asymmetric",
                                                    "bias_correction", "set_<OpType>_input_int16", "set_<OpType>_output_int16"};
        for (const auto& item : o.items) {
            std::smatch m;
            if (item == "set_all_nodes_int16") o.set_all_nodes_int16 = true;
            else if (item == "set_model_output_int8") o.set_model_output_int8 = true;
            else if (item == "set_model_output_int16") o.set_model_output_int16 = true;
            else if (item == "set_Softmax_input_int8") o.softmax_input_int8 = true;
            else if (item == "set_Softmax_output_int8") o.softmax_output_int8 = true;
            else if (item == "asymmetric") o.asymmetric = true;
            else if (item == "bias_correction") o.bias_correction = true;
            else if (std::regex_match(item, m, op_int16))
                (m[2].str() == "input" ? o.input_int16_ops : o.output_int16_ops).insert(m[1].str());
            else
                r.one_of(item, fixed, C + "optimization");  // fails with the nearest valid item
        }
        if (o.bias_correction && c.calibration_type == "skip")
            r.fail("value", C + "optimization", "bias_correction needs calibration data, but calibration_type skip calibrates on "
                                                "random data; remove bias_correction or choose another calibration_type");
        if (o.bias_correction && c.calibration_type == "load" && !cp.contains("cal_data_dir"))
            r.fail("value", C + "optimization", "bias_correction with calibration_type load needs calibration data: give "
                                                "cal_data_dir (or remove bias_correction)");
        if (o.set_model_output_int8 && o.set_model_output_int16)
            r.fail("value", C + "optimization", "set_model_output_int8 and set_model_output_int16 contradict each other");
    }
    for (const auto& name : c.run_on_cpu)
        if (std::find(c.run_on_bpu.begin(), c.run_on_bpu.end(), name) != c.run_on_bpu.end())
            r.fail("value", C + "run_on_cpu", "node '" + name + "' is also listed in run_on_bpu");

    // ---- march limits ----
    if (!c.int16_allowed()) {
        const auto& o = c.optimization;
        bool wants16 = o.set_all_nodes_int16 || o.set_model_output_int16 || !o.input_int16_ops.empty() || !o.output_int16_ops.empty();
        for (const auto& kv : c.node_info) {
            wants16 = wants16 || kv.second.output_bits == 16;
            for (const auto& ib : kv.second.input_bits) wants16 = wants16 || ib.second == 16;
        }
        if (wants16)
            r.fail("value", M + "march", "bernoulli2 computes in int8 only, but the config asks for int16 nodes; use bayes or bayes-e");
    }

    // ---- compiler_parameters ----
    c.compiler_parameters = group("compiler_parameters");
    return c;
}

/// node_info in its long form: {node: {ON, InputType, InputType<N>, OutputType}}.
inline nlohmann::json node_info_to_json(const std::map<std::string, NodeInfo>& node_info) {
    nlohmann::json ni = nlohmann::json::object();
    for (const auto& kv : node_info) {
        nlohmann::json n = nlohmann::json::object();
        if (!kv.second.on.empty()) n["ON"] = kv.second.on;
        for (const auto& ib : kv.second.input_bits)
            n[ib.first < 0 ? "InputType" : "InputType" + std::to_string(ib.first)] = ib.second == 16 ? "int16" : "int8";
        if (kv.second.output_bits) n["OutputType"] = kv.second.output_bits == 16 ? "int16" : "int8";
        ni[kv.first] = n;
    }
    return ni;
}

/// The config as understood (normalized, defaults filled), for the log and report.json.
inline nlohmann::json to_json(const ConvertConfig& c) {
    nlohmann::json j;
    auto& mp = j["model_parameters"];
    mp["onnx_model"] = c.onnx_model;
    mp["march"] = c.march;
    mp["output_model_file_prefix"] = c.output_model_file_prefix;
    mp["working_dir"] = c.working_dir;
    mp["output_nodes"] = c.output_nodes;
    mp["layer_out_dump"] = c.layer_out_dump;
    mp["remove_node_type"] = c.remove_node_type;
    mp["remove_node_name"] = c.remove_node_name;
    mp["dump_calibration_data"] = c.dump_calibration_data;
    mp["node_info"] = node_info_to_json(c.node_info);
    auto& inputs = j["inputs"];
    inputs = nlohmann::json::array();
    for (const auto& in : c.inputs)
        inputs.push_back({{"input_name", in.name},
                          {"input_shape", in.shape},
                          {"input_batch", in.batch},
                          {"input_type_train", in.type_train},
                          {"input_layout_train", in.layout_train},
                          {"input_type_rt", in.type_rt},
                          {"input_layout_rt", in.layout_rt},
                          {"input_space_and_range", in.space_and_range},
                          {"norm_type", in.norm_type},
                          {"mean_value", in.mean},
                          {"scale_value", in.scale},
                          {"cal_data_dir", in.cal_data_dir},
                          {"cal_data_type", in.cal_data_type}});
    auto& cp = j["calibration_parameters"];
    cp["calibration_type"] = c.calibration_type;
    cp["calibration_file"] = c.calibration_file;
    cp["max_percentile"] = c.max_percentile;
    cp["per_channel"] = c.per_channel;
    cp["run_on_cpu"] = c.run_on_cpu;
    cp["run_on_bpu"] = c.run_on_bpu;
    cp["optimization"] = c.optimization.items;
    j["compiler_parameters"] = c.compiler_parameters;
    return j;
}

}  // namespace config
BPUQ_NAMESPACE_END
