// Constant operands of BPU elementwise nodes (Add/Sub/Mul with an initializer, e.g. the inserted
// mean/scale preprocessing): the BPU reads them quantized, so they get parameters here, and the
// calibrated model, the QDQ model and the integer program all use the same quantized values
// (docs/DECISIONS.md #27). The scale is chosen exact when possible: the other operand's scale
// times a power of two when that represents every value better than max|c| / qmax (integer means
// on 0..255 pixels are then exact).
#pragma once

#include <cmath>
#include <map>
#include <string>

#include "../graph/ir.hpp"
#include "../quant/quantize.hpp"
#include "quant_plan.hpp"

BPUQ_NAMESPACE_BEGIN
namespace calib {

namespace detail {
/// Largest |c - dequantize(quantize(c))| over the values of `c` with parameters `q`.
inline double constant_error(const Tensor& c, const QParams& q) {
    const Tensor back = dequantize_tensor(quantize_tensor(c, q), q);
    double worst = 0.0;
    for (std::int64_t i = 0; i < c.numel(); ++i)
        worst = std::max(worst, std::fabs(double(c.data<float>()[i]) - double(back.data<float>()[i])));
    return worst;
}
}  // namespace detail

/// Symmetric per-tensor parameters for constant `c` read by an elementwise node whose other operand
/// has scale `other_scale` (0: unknown): max|c| / qmax, or other_scale * 2^k when that is more exact.
inline QParams constant_qparams(const Tensor& c, int bits, float other_scale) {
    BPUQ_CHECK(c.dtype() == DType::float32, "calib.constant", "constant operands must be float32, got " +
                                                                  std::string(dtype_name(c.dtype())));
    float amax = 0.0f;
    for (std::int64_t i = 0; i < c.numel(); ++i) {
        BPUQ_CHECK(std::isfinite(c.data<float>()[i]), "calib.constant", "constant operand holds a non-finite value");
        amax = std::max(amax, std::fabs(c.data<float>()[i]));
    }
    QParams best = qparams_from_threshold(amax, bits);
    if (!(other_scale > 0.0f) || amax == 0.0f) return best;
    const double qmax = double(best.qmax());
    const int k = static_cast<int>(std::ceil(std::log2(double(amax) / (double(other_scale) * qmax))));
    const float aligned = std::ldexp(other_scale, k);
    if (!std::isnormal(aligned) || double(amax) / double(aligned) > qmax) return best;
    QParams q = best;
    q.scale[0] = aligned;
    if (detail::constant_error(c, q) < detail::constant_error(c, best)) return q;
    return best;
}

/// Parameters of every float constant operand of a BPU Add/Sub/Mul, keyed by initializer name
/// (merged into the weights map: the calibrated model gets a Calibration node, the QDQ model an
/// integer initializer + DequantizeLinear, the program the same integers).
inline std::map<std::string, QParams> quantize_constant_operands(const graph::Graph& g, const QuantPlan& plan,
                                                                 const std::map<std::string, QParams>& acts) {
    std::map<std::string, QParams> out;
    for (const auto& n : g.nodes) {
        if (n.op_type != "Add" && n.op_type != "Sub" && n.op_type != "Mul") continue;
        auto np = plan.nodes.find(n.name);
        if (np == plan.nodes.end() || !np->second.on_bpu || n.inputs.size() != 2 || n.outputs.empty()) continue;
        auto tp = plan.tensors.find(plan.root_of(n.outputs[0]));
        if (tp == plan.tensors.end()) continue;
        for (std::size_t i = 0; i < 2; ++i) {
            const std::string& c = n.inputs[i];
            const std::string& other = n.inputs[1 - i];
            if (!g.is_initializer(c) || g.is_initializer(other) || out.count(c)) continue;
            if (g.initializer(c)->dtype() != DType::float32) continue;
            float other_scale = 0.0f;
            if (n.op_type != "Mul" && plan.is_quantized(other)) {
                auto a = acts.find(plan.root_of(other));
                if (a != acts.end() && a->second.scale.size() == 1) other_scale = a->second.scale[0];
            }
            out[c] = constant_qparams(*g.initializer(c), tp->second.bits, other_scale);
        }
    }
    return out;
}

}  // namespace calib
BPUQ_NAMESPACE_END
