// Preprocessing inserted at a model input (original_float_model.onnx): y = (x - mean) * scale per
// channel, as input_parameters' norm_type / mean_value / scale_value ask (scale multiplies).
#pragma once

#include <string>
#include <vector>

#include "../config/convert_config.hpp"
#include "../graph/ir.hpp"

BPUQ_NAMESPACE_BEGIN
namespace flow {

/// Inserts Sub(mean) and/or Mul(scale) after `input` (a graph input, or the output of its colour
/// conversion); every former reader of it reads the normalized tensor, whose name is returned (`input` itself for norm_type
/// no_preprocess, which inserts nothing).
inline std::string insert_preprocessing(graph::Graph& g, const std::string& input, const config::InputSpec& spec) {
    const bool mean = !spec.mean.empty(), scale = !spec.scale.empty();
    if (!mean && !scale) return input;
    const graph::Value* v = g.find_value(input);
    BPUQ_CHECK(v && v->has_shape && v->shape.size() == 4, "config.preprocess",
               "mean/scale preprocessing needs a 4-D input; '" + input + "' is " + (v && v->has_shape ? shape_to_string(v->shape) : "unknown"));
    const bool nchw = spec.layout_train == "NCHW";
    const std::int64_t channels = nchw ? v->shape[1] : v->shape[3];
    auto constant = [&](const std::vector<float>& vals, const std::string& what) {
        BPUQ_CHECK(vals.size() == 1 || std::int64_t(vals.size()) == channels, "config.preprocess",
                   "input '" + input + "' has " + std::to_string(channels) + " channels but " + what + " has " +
                       std::to_string(vals.size()) + " values");
        const std::int64_t c = std::int64_t(vals.size());
        return Tensor::from_vector<float>(c == 1 ? Shape{} : nchw ? Shape{1, c, 1, 1} : Shape{1, 1, 1, c}, vals);
    };
    std::string current = input;
    std::vector<graph::Node> pre;
    if (mean) {
        const std::string k = g.unique_name(input + "_mean");
        g.initializers[k] = constant(spec.mean, "mean_value");
        graph::Node n;
        n.name = g.unique_name(input + "_preprocess_sub");
        n.op_type = "Sub";
        n.inputs = {current, k};
        n.outputs = {g.unique_name(input + "_centered")};
        current = n.outputs[0];
        pre.push_back(n);
    }
    if (scale) {
        const std::string k = g.unique_name(input + "_scale");
        g.initializers[k] = constant(spec.scale, "scale_value");
        graph::Node n;
        n.name = g.unique_name(input + "_preprocess_mul");
        n.op_type = "Mul";
        n.inputs = {current, k};
        n.outputs = {g.unique_name(input + "_normalized")};
        current = n.outputs[0];
        pre.push_back(n);
    }
    for (auto& n : g.nodes)
        for (auto& i : n.inputs)
            if (i == input) i = current;
    for (auto& o : g.outputs)
        if (o == input) o = current;
    // right after the producer of `input` (an inserted colour conversion), else first
    const std::int64_t producer = g.producer_of(input);
    g.nodes.insert(g.nodes.begin() + (producer < 0 ? 0 : producer + 1), pre.begin(), pre.end());
    return current;
}

}  // namespace flow
BPUQ_NAMESPACE_END
