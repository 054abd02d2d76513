// Weight quantization: which initializers are weights, on which axis their output channels lie,
// and their symmetric per-output-channel parameters (threshold = max |w_c|, range [-127, 127]).
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "../graph/ir.hpp"
#include "quant_plan.hpp"

BPUQ_NAMESPACE_BEGIN
namespace calib {

/// The output-channel axis of input `index` of `n` if that input is a weight, else -1.
inline int weight_axis(const graph::Node& n, std::size_t index) {
    if (index != 1) return -1;
    if (n.op_type == "Conv") return 0;                               // [Co, Ci/g, kh, kw]
    if (n.op_type == "Gemm") return n.attr_int("transB", 0) ? 0 : 1;  // B is [K, N] or [N, K]
    if (n.op_type == "MatMul") return -2;                            // [.., K, N]: last axis (resolved by rank)
    return -1;
}

/// Symmetric narrow-range per-channel parameters along `axis` of a float weight tensor.
inline QParams weight_qparams(const Tensor& w, int axis, int bits = 8) {
    BPUQ_CHECK(w.dtype() == DType::float32, "calib.weight", "weights must be float32, got " + std::string(dtype_name(w.dtype())));
    const auto rank = static_cast<int>(w.rank());
    if (axis < 0) axis += rank;
    BPUQ_CHECK(axis >= 0 && axis < rank, "calib.weight", "weight axis out of range for shape " + shape_to_string(w.shape()));
    const std::size_t C = static_cast<std::size_t>(w.dim(static_cast<std::size_t>(axis)));
    std::vector<float> lo(C, 0.0f), hi(C, 0.0f);
    for_each_channel_run(w.shape(), axis, C, [&](std::size_t c, std::int64_t off, std::int64_t len) {
        const float* p = w.data<float>() + off;
        for (std::int64_t i = 0; i < len; ++i) {
            BPUQ_CHECK(std::isfinite(p[i]), "calib.weight", "weight tensor holds a non-finite value");
            hi[c] = std::max(hi[c], std::fabs(p[i]));
        }
        lo[c] = -hi[c];
    });
    return qparams_from_ranges(lo, hi, axis, bits, true, /*narrow=*/true);
}

/// Parameters of every weight initializer read by a BPU node (Conv/Gemm/MatMul input 1).
inline std::map<std::string, QParams> quantize_weights(const graph::Graph& g, const QuantPlan& plan) {
    std::map<std::string, QParams> out;
    for (const auto& n : g.nodes) {
        auto np = plan.nodes.find(n.name);
        if (np == plan.nodes.end() || !np->second.on_bpu) continue;
        for (std::size_t i = 0; i < n.inputs.size(); ++i) {
            int axis = weight_axis(n, i);
            if (axis == -1 || !g.is_initializer(n.inputs[i]) || out.count(n.inputs[i])) continue;
            const Tensor& w = *g.initializer(n.inputs[i]);
            if (w.dtype() != DType::float32) continue;
            if (axis == -2) axis = static_cast<int>(w.rank()) - 1;
            out[n.inputs[i]] = weight_qparams(w, axis);
        }
    }
    return out;
}

}  // namespace calib
BPUQ_NAMESPACE_END
