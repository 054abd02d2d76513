// The calibrated model as the debug tool sees it: its Calibration nodes (activation or weight,
// with their parameters), the ordinary nodes they quantize, and the node variants (float, as
// calibrated, int16) from which every experiment's graph configuration is assembled.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "../core/qparams.hpp"
#include "../graph/ir.hpp"
#include "../graph/ops/bpuq_ops.hpp"

BPUQ_NAMESPACE_BEGIN
namespace debug {

/// How one Calibration node behaves in an experiment.
enum class CalibMode : std::uint8_t {
    float_ = 0,      ///< switched off: identity (the float model)
    quantized = 1,   ///< as calibrated (int8 or int16, the model's own parameters)
    int16 = 2,       ///< raised to int16 with the same threshold (SPEC §3 sensitivity_analysis)
};

/// A Calibration node of the model.
struct CalibrationNode {
    std::size_t step = 0;  ///< index in the sorted graph
    std::string name;
    bool weight = false;   ///< kind "weight"
    bool bias = false;     ///< kind "bias": switches a node's bias to its corrected value (bias_correction)
    std::string input;     ///< the float tensor it quantizes (the original bias, for kind "bias")
    std::string output;    ///< what consumers read
    QParams params;        ///< none for kind "bias"
    bool activation() const { return !weight && !bias; }
};

/// An ordinary node that reads at least one calibrated tensor: "quantizing the node" means
/// switching on the Calibration nodes of its inputs (Horizon's node_type "node").
struct QuantizedNode {
    std::size_t step = 0;
    std::string name;
    std::string op_type;
    std::vector<std::size_t> calibrations;  ///< indices into CalibratedModel::calibrations()
    std::string output;                     ///< the tensor it writes (its first output)
};

/// Threshold-preserving int16 parameters for a Calibration node's int8 parameters: the
/// clipping range stays, the step shrinks (asymmetric int8 becomes symmetric int16, as every
/// 16-bit tensor is symmetric — docs/ARITHMETIC.md §1).
inline QParams int16_params(const QParams& p) {
    if (p.bits == 16) return p;
    QParams q = p;
    q.bits = 16;
    for (std::size_t c = 0; c < p.scale.size(); ++c) {
        const float lo = p.scale[c] * float(p.qmin() - p.zero_point[c]);
        const float hi = p.scale[c] * float(p.qmax() - p.zero_point[c]);
        const float t = std::max(-lo, hi);
        q.scale[c] = t > 0 ? t / float(qmax_of(16)) : 1.0f;
        q.zero_point[c] = 0;
    }
    q.symmetric = true;
    return q;
}

class CalibratedModel {
public:
    /// Takes a calibrated graph (bpuq_convert's `<prefix>_calibrated_model.onnx`, loaded by the
    /// onnx layer). Errors name what is missing when it is not a calibrated model.
    explicit CalibratedModel(graph::Graph g) : graph_(std::move(g)) {
        graph_.name_nodes();
        graph_.sort();
        std::map<std::string, std::size_t> calib_of_output;
        for (std::size_t i = 0; i < graph_.nodes.size(); ++i) {
            const graph::Node& n = graph_.nodes[i];
            if (!is_calibration(n)) continue;
            const std::string kind = n.attr_string("kind", "activation");
            BPUQ_CHECK(kind == "activation" || kind == "weight" || kind == "bias", "debug.model",
                       n.describe() + " has kind '" + kind + "' (activation, weight or bias)");
            // a bias takes its weight's scale as a 2nd input; a weight may take the fold factors of
            // a per-channel input (DECISIONS.md #44)
            const bool inputs_ok = kind == "bias"     ? n.inputs.size() == 2
                                   : kind == "weight" ? (n.inputs.size() == 1 || n.inputs.size() == 2)
                                                      : n.inputs.size() == 1;
            BPUQ_CHECK(inputs_ok && n.outputs.size() == 1, "debug.model",
                       n.describe() + " must have " +
                           (kind == "bias" ? "2 inputs" : kind == "weight" ? "1 or 2 inputs (weight, fold factors)" : "1 input") +
                           " and one output");
            CalibrationNode c;
            c.step = i;
            c.name = n.name;
            c.weight = kind == "weight";
            c.bias = kind == "bias";
            c.input = n.inputs[0];
            c.output = n.outputs[0];
            if (!c.bias) c.params = graph::ops::calibration_qparams(n);
            calib_of_output[c.output] = calibrations_.size();
            calibrations_.push_back(std::move(c));
        }
        BPUQ_CHECK(!calibrations_.empty(), "debug.model",
                   "the model '" + graph_.name + "' has no ai.bpuq Calibration nodes: the debug tool needs a calibrated model "
                   "(bpuq_convert's <prefix>_calibrated_model.onnx)");
        for (std::size_t i = 0; i < graph_.nodes.size(); ++i) {
            const graph::Node& n = graph_.nodes[i];
            if (is_calibration(n)) continue;
            QuantizedNode q;
            q.step = i;
            q.name = n.name;
            q.op_type = n.op_type;
            q.output = n.outputs.empty() ? std::string() : n.outputs[0];
            for (const auto& in : n.inputs) {
                auto it = calib_of_output.find(in);
                if (it != calib_of_output.end() && std::find(q.calibrations.begin(), q.calibrations.end(), it->second) == q.calibrations.end())
                    q.calibrations.push_back(it->second);
            }
            if (!q.calibrations.empty()) nodes_.push_back(std::move(q));
        }
        // The node variants every configuration points into (pointer identity = "unchanged").
        variants_.resize(calibrations_.size());
        for (std::size_t c = 0; c < calibrations_.size(); ++c) {
            const graph::Node& n = graph_.nodes[calibrations_[c].step];
            auto& v = variants_[c];
            v[0] = n;
            v[0].attributes["enabled"] = graph::Attribute::make_int(0);
            v[1] = n;
            v[1].attributes["enabled"] = graph::Attribute::make_int(1);
            v[2] = v[1];
            // int16 leaves far less error for a corrected bias to compensate (and bpuq_convert
            // re-corrects an int16 node from scratch): the int16 variant keeps the float bias
            if (calibrations_[c].bias) {
                v[2] = v[0];
                continue;
            }
            const QParams p16 = int16_params(calibrations_[c].params);
            v[2].attributes["bits"] = graph::Attribute::make_int(16);
            v[2].attributes["scales"] = graph::Attribute::make_floats(p16.scale);
            v[2].attributes["zero_points"] = graph::Attribute::make_ints(std::vector<std::int64_t>(p16.zero_point.size(), 0));
        }
    }

    // Variants point into this object: it stays where it was built.
    CalibratedModel(const CalibratedModel&) = delete;
    CalibratedModel& operator=(const CalibratedModel&) = delete;

    static bool is_calibration(const graph::Node& n) { return n.op_type == "Calibration" && n.domain == graph::kBpuqDomain; }

    const graph::Graph& graph() const { return graph_; }
    const std::vector<CalibrationNode>& calibrations() const { return calibrations_; }
    const std::vector<QuantizedNode>& nodes() const { return nodes_; }

    /// Index of a Calibration node by name, or -1.
    std::int64_t find_calibration(const std::string& name) const {
        for (std::size_t i = 0; i < calibrations_.size(); ++i)
            if (calibrations_[i].name == name) return std::int64_t(i);
        return -1;
    }
    /// Index of a quantized node by name, or -1.
    std::int64_t find_node(const std::string& name) const {
        for (std::size_t i = 0; i < nodes_.size(); ++i)
            if (nodes_[i].name == name) return std::int64_t(i);
        return -1;
    }

    /// The graph's node list for a choice of modes (one per Calibration node): what the
    /// CachedRunner executes. Ordinary nodes are the graph's own.
    std::vector<const graph::Node*> configure(const std::vector<CalibMode>& modes) const {
        BPUQ_CHECK(modes.size() == calibrations_.size(), "debug.config", "one mode per Calibration node is needed");
        std::vector<const graph::Node*> cfg(graph_.nodes.size());
        for (std::size_t i = 0; i < cfg.size(); ++i) cfg[i] = &graph_.nodes[i];
        for (std::size_t c = 0; c < calibrations_.size(); ++c) cfg[calibrations_[c].step] = &variants_[c][std::size_t(modes[c])];
        return cfg;
    }

    /// Modes with every Calibration node set to `m`.
    std::vector<CalibMode> all(CalibMode m) const { return std::vector<CalibMode>(calibrations_.size(), m); }

private:
    graph::Graph graph_;
    std::vector<CalibrationNode> calibrations_;
    std::vector<QuantizedNode> nodes_;
    std::vector<std::array<graph::Node, 3>> variants_;
};

}  // namespace debug
BPUQ_NAMESPACE_END
