// The table of operators the float executor supports: op type, opset range, shape
// inference and execution functions. Lookup errors list what is supported.
#pragma once

#include <string>
#include <vector>

#include "ops/bpuq_ops.hpp"
#include "ops/common.hpp"
#include "ops/conv.hpp"
#include "ops/elementwise.hpp"
#include "ops/matmul.hpp"
#include "ops/normalization.hpp"
#include "ops/pool.hpp"
#include "ops/resize.hpp"
#include "ops/shape_ops.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {

/// One supported operator of the ai.onnx domain (or "bpuq" for internal ones).
struct OpSchema {
    const char* op_type;
    std::int64_t min_opset;  ///< the first ai.onnx opset whose semantics this implements
    InferFn infer;
    RunFn run;
};

/// Every supported operator. min_opset is the oldest opset whose version of the op is
/// implemented (most are 7 or older). Opset 7-20 semantics are handled inside the functions where
/// they changed (attributes becoming inputs, Softmax's axis, Split's num_outputs...).
inline const std::vector<OpSchema>& op_schemas() {
    using namespace ops;
    static const std::vector<OpSchema> table = {
        {"Add", 7, infer_broadcast, run_add},
        {"AveragePool", 7, infer_pool, run_average_pool},
        {"BatchNormalization", 7, infer_batchnorm, run_batchnorm},
        {"Clip", 6, infer_same_as_input, run_clip},
        {"Concat", 4, infer_concat, run_concat},
        {"Constant", 1, infer_constant, run_constant},
        {"Conv", 1, infer_conv, run_conv},
        {"ConvInteger", 10, infer_conv, run_conv_integer},
        {"ConvTranspose", 1, infer_conv_transpose, run_conv_transpose},
        {"DequantizeLinear", 10, infer_dequantize, run_dequantize_linear},
        {"Div", 7, infer_broadcast, run_div},
        {"Dropout", 7, infer_identity, run_dropout},
        {"Erf", 9, infer_same_as_input, run_erf},
        {"Exp", 6, infer_same_as_input, run_exp},
        {"Flatten", 1, infer_flatten, run_flatten},
        {"Gather", 1, infer_gather, run_gather},
        {"Gelu", 20, infer_same_as_input, run_gelu},
        {"Gemm", 7, infer_gemm, run_gemm},
        {"GlobalAveragePool", 1, infer_global_pool, run_global_pool<false>},
        {"GlobalMaxPool", 1, infer_global_pool, run_global_pool<true>},
        {"HardSigmoid", 6, infer_same_as_input, run_hard_sigmoid},
        {"HardSwish", 14, infer_same_as_input, run_hardswish},
        {"Identity", 1, infer_identity, run_identity},
        {"LeakyRelu", 6, infer_same_as_input, run_leaky_relu},
        {"MatMul", 1, infer_matmul, run_matmul},
        {"MatMulInteger", 10, infer_matmul, run_matmul_integer},
        {"MaxPool", 1, infer_pool, run_max_pool},
        {"Mul", 7, infer_broadcast, run_mul},
        {"Pad", 2, infer_pad, run_pad},
        {"Pow", 7, infer_broadcast, run_pow},
        {"PRelu", 7, infer_same_as_input, run_prelu},
        {"QLinearConv", 10, infer_conv, run_qlinear_conv},
        {"QLinearMatMul", 10, infer_matmul, run_qlinear_matmul},
        {"QuantizeLinear", 10, infer_quantize, run_quantize_linear},
        {"ReduceMean", 1, infer_reduce, run_reduce_mean},
        {"Relu", 6, infer_same_as_input, run_relu},
        {"Reshape", 5, infer_reshape, run_reshape},
        {"Resize", 10, infer_resize, run_resize},
        {"Shape", 1, infer_shape_op, run_shape},
        {"Sigmoid", 6, infer_same_as_input, run_sigmoid},
        {"Slice", 1, infer_slice, run_slice},
        {"Softmax", 1, infer_same_as_input, run_softmax},
        {"Softplus", 1, infer_same_as_input, run_softplus},
        {"Split", 2, infer_split, run_split},
        {"Sqrt", 6, infer_same_as_input, run_sqrt},
        {"Squeeze", 1, infer_squeeze<true>, run_squeeze<true>},
        {"Sub", 7, infer_broadcast, run_sub},
        {"Tanh", 6, infer_same_as_input, run_tanh},
        {"Transpose", 1, infer_transpose, run_transpose},
        {"Unsqueeze", 1, infer_squeeze<false>, run_squeeze<false>},
        {"Upsample", 7, infer_resize, run_resize},
    };
    return table;
}

/// Comma-separated list of supported op types, for error messages and docs.
inline std::string supported_op_list() {
    std::string s;
    for (const auto& o : op_schemas()) s += (s.empty() ? "" : ", ") + std::string(o.op_type);
    return s;
}

/// The schema for a node, or nullptr.
/// bpuq's own operators (domain ai.bpuq), used in calibrated models.
inline const std::vector<OpSchema>& bpuq_op_schemas() {
    static const std::vector<OpSchema> table = {
        {"Calibration", 1, ops::infer_calibration, ops::run_calibration},
    };
    return table;
}

inline const OpSchema* find_op(const std::string& domain, const std::string& op_type) {
    if (domain == kBpuqDomain) {
        for (const auto& o : bpuq_op_schemas())
            if (op_type == o.op_type) return &o;
        return nullptr;
    }
    if (!(domain.empty() || domain == "ai.onnx")) return nullptr;
    for (const auto& o : op_schemas())
        if (op_type == o.op_type) return &o;
    return nullptr;
}

/// The schema for a node or a graph.unsupported error naming the node, op, opset and the
/// supported list.
inline const OpSchema& require_op(const Node& n, std::int64_t opset) {
    const OpSchema* s = find_op(n.domain, n.op_type);
    BPUQ_CHECK(s != nullptr, "graph.unsupported",
               "node '" + n.name + "' uses op " + (n.domain.empty() ? "" : n.domain + ".") + n.op_type + " (opset " +
                   std::to_string(opset) + "), which bpuq does not support; supported ai.onnx ops: " + supported_op_list());
    // opsets 7-20; an older model loads when this op's semantics have not changed since then
    BPUQ_CHECK(opset >= s->min_opset && opset <= 20, "graph.unsupported",
               "node '" + n.name + "' (" + n.op_type + "): ai.onnx opset " + std::to_string(opset) +
                   " is outside the range this op is supported in (" + std::to_string(s->min_opset) + "-20)");
    return *s;
}

}  // namespace graph

BPUQ_NAMESPACE_END
