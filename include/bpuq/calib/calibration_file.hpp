// The calibration parameters file <prefix>_calibration.json: every activation's scales, zero
// points, bits and axis (and the biases bias_correction changed), written by every conversion and
// read back by calibration_type: load so that a later run reproduces that quantization exactly.
#pragma once

#include <algorithm>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../config/text.hpp"
#include "../core/qparams.hpp"
#include "quant_plan.hpp"

BPUQ_NAMESPACE_BEGIN
namespace calib {

/// The contents of a calibration file.
struct CalibrationFile {
    std::string path;    ///< for messages
    std::string method;  ///< how the source run chose the parameters (informative)
    std::map<std::string, QParams> activations;
    std::map<std::string, std::vector<float>> biases;  ///< node name -> corrected float bias (bias_correction)
};

/// The JSON written as <prefix>_calibration.json.
inline nlohmann::json calibration_file_json(const std::string& method, const std::map<std::string, QParams>& acts,
                                            const std::map<std::string, std::vector<float>>& biases = {}) {
    nlohmann::json j;
    j["format"] = "bpuq.calibration";
    j["version"] = 1;
    j["method"] = method;
    j["activations"] = nlohmann::json::object();
    for (const auto& kv : acts)
        j["activations"][kv.first] = {{"bits", kv.second.bits}, {"scales", kv.second.scale}, {"zero_points", kv.second.zero_point},
                                      {"axis", kv.second.axis}};
    if (!biases.empty()) {
        j["biases"] = nlohmann::json::object();
        for (const auto& kv : biases) j["biases"][kv.first] = kv.second;
    }
    return j;
}

namespace detail {
[[noreturn]] inline void calibration_file_error(const std::string& path, const std::string& what) {
    BPUQ_THROW("calibration_file", "calibration file " + path + ": " + what);
#if !BPUQ_HAS_EXCEPTIONS
    std::abort();
#endif
}
}  // namespace detail

/// Parses a calibration file's JSON and checks every entry's form (bits 8 or 16, positive finite
/// scales, zero points in range, one zero point per scale). Errors name the file and the tensor.
inline CalibrationFile parse_calibration_file(const nlohmann::json& j, const std::string& path) {
    using detail::calibration_file_error;
    CalibrationFile f;
    f.path = path;
    if (!j.is_object() || !j.contains("activations") || !j.at("activations").is_object())
        calibration_file_error(path, "expected an object with an \"activations\" object (tensor name -> {bits, scales, "
                                     "zero_points, axis}), as bpuq_convert writes to <prefix>_calibration.json");
    if (j.contains("format") && j.at("format") != "bpuq.calibration")
        calibration_file_error(path, "\"format\" is " + j.at("format").dump() + ", expected \"bpuq.calibration\"");
    if (j.contains("version") && !(j.at("version").is_number_integer() && j.at("version").get<int>() == 1))
        calibration_file_error(path, "\"version\" is " + j.at("version").dump() + "; this bpuq reads version 1");
    if (j.contains("method") && j.at("method").is_string()) f.method = j.at("method").get<std::string>();
    for (auto it = j.at("activations").begin(); it != j.at("activations").end(); ++it) {
        const std::string t = "tensor '" + it.key() + "'";
        const nlohmann::json& e = it.value();
        if (!e.is_object()) calibration_file_error(path, t + ": expected {bits, scales, zero_points, axis}, got " + e.dump());
        for (auto k = e.begin(); k != e.end(); ++k)
            if (k.key() != "bits" && k.key() != "scales" && k.key() != "zero_points" && k.key() != "axis")
                calibration_file_error(path, t + ": unknown key '" + k.key() + "'; allowed: bits, scales, zero_points, axis");
        QParams q;
        if (!e.contains("bits") || !e.at("bits").is_number_integer() || (e.at("bits").get<int>() != 8 && e.at("bits").get<int>() != 16))
            calibration_file_error(path, t + ": bits " + (e.contains("bits") ? e.at("bits").dump() : std::string("missing")) +
                                             "; allowed: 8 or 16");
        q.bits = e.at("bits").get<int>();
        if (!e.contains("scales") || !e.at("scales").is_array() || e.at("scales").empty())
            calibration_file_error(path, t + ": \"scales\" must be a non-empty list of positive numbers");
        q.scale.clear();
        for (const auto& s : e.at("scales")) {
            if (!s.is_number() || !(s.get<double>() > 0.0) || !std::isfinite(static_cast<float>(s.get<double>())))
                calibration_file_error(path, t + ": scale " + s.dump() + " must be a positive finite number");
            q.scale.push_back(static_cast<float>(s.get<double>()));
        }
        q.zero_point.assign(q.scale.size(), 0);
        if (e.contains("zero_points")) {
            const auto& z = e.at("zero_points");
            if (!z.is_array() || z.size() != q.scale.size())
                calibration_file_error(path, t + ": \"zero_points\" must list one integer per scale (" +
                                                 std::to_string(q.scale.size()) + ")");
            for (std::size_t i = 0; i < z.size(); ++i) {
                if (!z[i].is_number_integer() || z[i].get<long long>() < qmin_of(q.bits) || z[i].get<long long>() > qmax_of(q.bits))
                    calibration_file_error(path, t + ": zero point " + z[i].dump() + " is outside the int" + std::to_string(q.bits) +
                                                     " range [" + std::to_string(qmin_of(q.bits)) + ", " +
                                                     std::to_string(qmax_of(q.bits)) + "]");
                q.zero_point[i] = static_cast<std::int32_t>(z[i].get<long long>());
            }
        }
        if (q.bits == 16)
            for (auto z : q.zero_point)
                if (z != 0) calibration_file_error(path, t + ": int16 tensors are symmetric (zero point 0), got " + std::to_string(z));
        q.axis = -1;
        if (e.contains("axis")) {
            if (!e.at("axis").is_number_integer() || e.at("axis").get<int>() < -1)
                calibration_file_error(path, t + ": axis " + e.at("axis").dump() + " must be -1 (per tensor) or a channel axis");
            q.axis = e.at("axis").get<int>();
        }
        if (q.axis < 0 && q.scale.size() != 1)
            calibration_file_error(path, t + ": axis -1 (per tensor) needs exactly one scale, got " + std::to_string(q.scale.size()));
        q.symmetric = true;
        for (auto z : q.zero_point) q.symmetric = q.symmetric && z == 0;
        f.activations[it.key()] = q;
    }
    if (j.contains("biases")) {
        if (!j.at("biases").is_object()) calibration_file_error(path, "\"biases\" must map node names to lists of numbers");
        for (auto it = j.at("biases").begin(); it != j.at("biases").end(); ++it) {
            std::vector<float> b;
            if (!it.value().is_array()) calibration_file_error(path, "bias of node '" + it.key() + "' must be a list of numbers");
            for (const auto& v : it.value()) {
                if (!v.is_number() || !std::isfinite(v.get<double>()))
                    calibration_file_error(path, "bias of node '" + it.key() + "' holds " + v.dump() + ", not a finite number");
                b.push_back(static_cast<float>(v.get<double>()));
            }
            f.biases[it.key()] = b;
        }
    }
    return f;
}

/// Reads and parses a calibration file.
inline CalibrationFile read_calibration_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) detail::calibration_file_error(path, "cannot be opened (calibration_parameters.calibration_file)");
    std::stringstream s;
    s << in.rdbuf();
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(s.str());
    } catch (const nlohmann::json::exception& e) {
        detail::calibration_file_error(path, std::string("is not valid JSON: ") + e.what());
    }
    return parse_calibration_file(j, path);
}

/// The activation parameters of a calibration file checked against the plan of this run: every
/// tensor the plan calibrates must be present with the plan's bit width; names the plan does not
/// quantize are errors (with the nearest known name); aliases (passthrough outputs) may be given
/// but must equal their source's parameters. Returns parameters for every planned tensor.
inline std::map<std::string, QParams> activations_from_file(const CalibrationFile& f, const QuantPlan& plan) {
    using detail::calibration_file_error;
    std::vector<std::string> known;
    for (const auto& kv : plan.tensors)
        if (kv.second.quantized) known.push_back(kv.first);
    std::map<std::string, QParams> out;
    for (const auto& kv : f.activations) {
        auto it = plan.tensors.find(kv.first);
        if (it == plan.tensors.end() || !it->second.quantized) {
            const std::string near = config::nearest(kv.first, known);
            calibration_file_error(f.path, "tensor '" + kv.first + "' is not an activation this model quantizes" +
                                               (near.empty() ? std::string() : " (did you mean '" + near + "'?)") +
                                               "; the file must come from a run of the same model and config");
        }
        const std::string root = plan.root_of(kv.first);
        const int bits = plan.tensors.at(root).bits;
        if (kv.second.bits != bits)
            calibration_file_error(f.path, "tensor '" + kv.first + "' has bits " + std::to_string(kv.second.bits) +
                                               " but this run quantizes it with " + std::to_string(bits) +
                                               " bits (node_info / optimization decide bit widths); allowed: " + std::to_string(bits));
        if (kv.second.axis >= 0) {  // per-channel activations: axis 1, one zero point, where the plan allows them
            const TensorPlan& tp = plan.tensors.at(root);
            const bool shared_zp = std::all_of(kv.second.zero_point.begin(), kv.second.zero_point.end(),
                                               [&](std::int32_t z) { return z == kv.second.zero_point[0]; });
            if (kv.second.axis != 1 || !shared_zp || !tp.channel_ok)
                calibration_file_error(f.path, "tensor '" + kv.first + "' has per-channel parameters (axis " +
                                                   std::to_string(kv.second.axis) + "), which the integer program takes only on axis 1, "
                                                   "with one zero point, for tensors whose producer and consumers allow them" +
                                                   (tp.channel_ok ? std::string() : " (here: " + tp.channel_reason + ")"));
        }
    }
    std::vector<std::string> missing;
    for (const auto& t : plan.calibrated) {
        auto it = f.activations.find(t);
        if (it == f.activations.end()) missing.push_back(t);
        else out[t] = it->second;
    }
    if (!missing.empty()) {
        std::vector<std::string> shown(missing.begin(), missing.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(missing.size(), 5)));
        calibration_file_error(f.path, std::to_string(missing.size()) + " tensor(s) this run quantizes have no parameters: '" +
                                           config::join(shown, "', '") + "'" + (missing.size() > 5 ? ", ..." : ""));
    }
    for (const auto& kv : plan.tensors) {
        if (!kv.second.quantized || kv.second.alias_of.empty()) continue;
        const QParams& root = out.at(plan.root_of(kv.first));
        auto it = f.activations.find(kv.first);
        if (it != f.activations.end() && (it->second.scale != root.scale || it->second.zero_point != root.zero_point))
            calibration_file_error(f.path, "tensor '" + kv.first + "' passes '" + plan.root_of(kv.first) +
                                               "' through unchanged (it shares its parameters) but the file gives it different ones");
        out[kv.first] = root;
    }
    return out;
}

}  // namespace calib
BPUQ_NAMESPACE_END
