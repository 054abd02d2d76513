// Which operators the BPU emulation runs in integers, and how each treats quantization scales.
//
// The one table the quantization plan, the fake-quant graph and the integer lowering agree on.
#pragma once

#include <string>
#include <vector>

#include "../core/config.hpp"

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
    static const std::vector<std::string> ops{"Conv",        "Gemm",      "MatMul",  "Add",        "Sub",
                                              "Mul",         "AveragePool", "GlobalAveragePool", "ReduceMean",
                                              "Concat",      "Relu",      "Clip",    "LeakyRelu",  "Sigmoid",
                                              "Tanh",        "HardSigmoid", "HardSwish", "Exp",   "Gelu",
                                              "Erf",         "Softplus",  "Sqrt",    "Resize",     "Upsample"};
    return ops;
}
inline const std::vector<std::string>& bpu_passthrough_ops() {
    static const std::vector<std::string> ops{"MaxPool", "GlobalMaxPool", "Reshape", "Flatten", "Transpose", "Squeeze",
                                              "Unsqueeze", "Identity", "Dropout", "Slice", "Split"};
    return ops;
}

inline QuantRole quant_role(const std::string& op_type) {
    for (const auto& o : bpu_compute_ops())
        if (o == op_type) return QuantRole::compute;
    for (const auto& o : bpu_passthrough_ops())
        if (o == op_type) return QuantRole::passthrough;
    return QuantRole::cpu_only;
}

}  // namespace calib
BPUQ_NAMESPACE_END
