// Which operators the BPU emulation runs in integers, and how each treats quantization scales.
//
// The one table the quantization plan, the fake-quant graph and the integer lowering agree on.
#pragma once

#include <algorithm>
#include <iterator>
#include <string>
#include <vector>

#include "../core/config.hpp"
#include "../graph/ir.hpp"
#include "../graph/ops/resize.hpp"

BPUQ_NAMESPACE_BEGIN
namespace calib {

enum class QuantRole {
    /// Produces a new value range: its float output is calibrated and requantized
    /// (Conv, Gemm, Add, pooling averages, LUT activations, Concat, ...).
    compute,
    /// Moves or selects values without changing them: the output shares the input's scale
    /// and zero point exactly (MaxPool, Reshape, Transpose, Slice, ...).
    passthrough,
    /// No integer kernel: runs in float on the CPU between a dequantize and a quantize.
    cpu_only,
};

inline const char* quant_role_name(QuantRole r) {
    switch (r) {
        case QuantRole::compute: return "compute";
        case QuantRole::passthrough: return "passthrough";
        case QuantRole::cpu_only: return "cpu";
    }
    return "?";
}

/// Operators with an integer (BPU) implementation, by role.
inline const std::vector<std::string>& bpu_compute_ops() {
    // Keep in step with emul/lower.hpp: every op listed here has an integer lowering.
    static const std::vector<std::string> ops{"Conv",    "Gemm",        "MatMul",    "Add",  "Sub",  "Mul",
                                              "AveragePool", "GlobalAveragePool", "Concat", "Relu", "Clip",
                                              "LeakyRelu", "Sigmoid",   "Tanh",      "HardSigmoid", "HardSwish",
                                              "Exp",     "Gelu",        "Erf",       "Softplus", "Sqrt"};
    return ops;
}
inline const std::vector<std::string>& bpu_passthrough_ops() {
    static const std::vector<std::string> ops{"MaxPool", "GlobalMaxPool", "Reshape", "Flatten", "Transpose", "Squeeze",
                                              "Unsqueeze", "Identity", "Dropout", "Resize", "Upsample"};
    return ops;
}

inline QuantRole quant_role(const std::string& op_type) {
    for (const auto& o : bpu_compute_ops())
        if (o == op_type) return QuantRole::compute;
    for (const auto& o : bpu_passthrough_ops())
        if (o == op_type) return QuantRole::passthrough;
    return QuantRole::cpu_only;
}

/// The integer form of a Resize / Upsample node (docs/ARITHMETIC.md "Resize"): nearest or
/// bilinear over H and W of an NCHW tensor, input and output on the same grid.
struct ResizeForm {
    std::string mode;          ///< "nearest" or "linear"
    std::string coordinates;   ///< half_pixel, asymmetric, align_corners, pytorch_half_pixel
    std::string nearest_mode;  ///< round_prefer_floor, round_prefer_ceil, floor, ceil
    std::vector<float> scales;  ///< H and W scales as the model states them (coordinates use these)
};

/// Why a Resize / Upsample node has no integer form ("" when it has one; then `form` is set).
/// Source coordinates use the node's own float32 scales, exactly as the float model does.
inline std::string resize_integer_refusal(const graph::Graph& g, const graph::Node& n, ResizeForm* form = nullptr) {
    if (n.op_type != "Resize" && n.op_type != "Upsample") return n.op_type + " is not a resize";
    const graph::Value* x = g.find_value(n.inputs.empty() ? std::string() : n.inputs[0]);
    if (!x || !x->has_shape || x->shape.size() != 4) return "input is not a 4-D NCHW tensor of known shape";
    for (auto d : x->shape)
        if (d <= 0) return "input shape is dynamic";
    const bool new_style = n.op_type == "Resize" && g.opset >= 11;
    auto constant = [&](std::size_t i) -> const Tensor* { return n.has_input(i) ? g.initializer(n.inputs[i]) : nullptr; };
    const std::size_t scales_index = new_style ? 2 : 1;
    if (n.has_input(scales_index) && !constant(scales_index)) return "scales are not a constant";
    if (new_style && n.has_input(3) && !constant(3)) return "sizes are not a constant";
    graph::ops::ResizeParams p;
    try {
        p = graph::ops::resize_params(n, x->shape, new_style ? constant(1) : nullptr, constant(scales_index),
                                      new_style ? constant(3) : nullptr, g.opset);
    } catch (const Error& e) {
        return e.what();
    }
    if (p.mode != "nearest" && p.mode != "linear") return "mode " + p.mode + " (integer kernels: nearest, linear)";
    static const char* coords[] = {"half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"};
    if (std::find(std::begin(coords), std::end(coords), p.coord) == std::end(coords))
        return "coordinate_transformation_mode " + p.coord + " (integer kernels: half_pixel, asymmetric, align_corners, "
               "pytorch_half_pixel)";
    if (p.antialias) return "antialias";
    if (p.exclude_outside && p.mode != "nearest") return "exclude_outside";
    if (p.out[0] != x->shape[0] || p.out[1] != x->shape[1] || p.scales[0] != 1.0 || p.scales[1] != 1.0)
        return "it resizes the batch or channel axis (integer kernels: H and W)";
    for (std::size_t a = 2; a < 4; ++a)
        if (p.out[a] <= 0 || !(p.scales[a] > 0.0) || double(float(p.scales[a])) != p.scales[a])
            return "scale " + std::to_string(p.scales[a]) + " on axis " + std::to_string(a) + " is not a positive float32 value";
    if (form) *form = ResizeForm{p.mode, p.coord, p.nearest_mode, {float(p.scales[2]), float(p.scales[3])}};
    return "";
}

/// A passthrough node whose output values are new (interpolated) rather than selected from its
/// input: the output shares the input's grid but each value is rounded onto it, so the
/// calibrated and QDQ models round there too (bilinear Resize).
inline bool passthrough_interpolates(const graph::Node& n) {
    if (n.op_type != "Resize" && n.op_type != "Upsample") return false;
    std::string mode = n.attr_string("mode", "nearest");
    return mode != "nearest";
}

}  // namespace calib
BPUQ_NAMESPACE_END
