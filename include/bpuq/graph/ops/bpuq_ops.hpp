// bpuq's own operators (domain "ai.bpuq"): Calibration, the fake-quant node of a calibrated model.
//
// Calibration(X) = dequantize(quantize(X)) with the node's scales, zero points, bit width and
// rounding (attributes), using the same arithmetic as the integer emulator (docs/ARITHMETIC.md).
// Attribute `enabled` = 0 makes it an identity: the debug tool switches nodes off that way.
// Kind "bias" (bias correction) has two inputs, the float model's bias and the corrected one, and
// no quantization parameters: enabled it yields the corrected bias, disabled the original — so
// switching a node's Calibration nodes off gives back the float model exactly. Kind "weight" may
// have a second input, fold factors broadcast to the weights (the scales of a per-channel input,
// calib/weights.hpp): then it quantizes W * F and yields dequantize(...) / F.
#pragma once

#include <string>
#include <vector>

#include "../../core/qparams.hpp"
#include "../../kernels/simd/quantize.hpp"
#include "../../quant/quantize.hpp"
#include "common.hpp"

BPUQ_NAMESPACE_BEGIN

namespace graph {

constexpr const char* kBpuqDomain = "ai.bpuq";

namespace ops {

/// QParams stored on a Calibration node (bits, scales, zero_points, axis, narrow).
inline QParams calibration_qparams(const Node& n) {
    QParams p;
    p.bits = static_cast<int>(n.attr_int("bits", 8));
    p.axis = static_cast<int>(n.attr_int("axis", -1));
    p.narrow = n.attr_int("narrow", 0) != 0;
    p.scale = n.attr_floats("scales");
    const auto zps = n.attr_ints("zero_points");
    p.zero_point.assign(zps.begin(), zps.end());
    p.symmetric = true;
    for (auto z : p.zero_point) p.symmetric = p.symmetric && z == 0;
    BPUQ_CHECK(p.bits == 8 || p.bits == 16, "graph.attribute", n.describe() + " has bits " + std::to_string(p.bits) + " (8 or 16)");
    BPUQ_CHECK(!p.scale.empty() && p.scale.size() == p.zero_point.size(), "graph.attribute",
               n.describe() + " needs as many scales as zero_points (at least one)");
    for (float s : p.scale)
        BPUQ_CHECK(s > 0.0f && std::isfinite(s), "graph.attribute", n.describe() + " has a non-positive or non-finite scale");
    BPUQ_CHECK(p.axis >= 0 || p.scale.size() == 1, "graph.attribute",
               n.describe() + " has " + std::to_string(p.scale.size()) + " scales but no per-channel axis");
    return p;
}

inline void infer_calibration(const Node& n, const std::vector<InferInput>& in, std::vector<Value>& out, std::int64_t) {
    if (!in.empty() && in[0].known_shape()) set_output(out, 0, DType::float32, in[0].shape());
    else set_output_dtype(out, 0, DType::float32);
    (void)n;
}

inline void run_calibration(const Node& n, const std::vector<const Tensor*>& in, std::vector<Tensor>& out, const ExecContext&,
                            std::int64_t) {
    const Tensor& x = need(n, in, 0);
    check_float(n, x, "input");
    if (n.attr_string("kind", "activation") == "bias") {
        const Tensor& corrected = need(n, in, 1);
        check_float(n, corrected, "corrected bias");
        BPUQ_CHECK(corrected.shape() == x.shape(), "graph.shape", n.describe() + ": the corrected bias has another shape than the bias");
        out[0] = n.attr_int("enabled", 1) == 0 ? x : corrected;
        return;
    }
    if (n.attr_int("enabled", 1) == 0) {
        out[0] = x;
        return;
    }
    const QParams p = calibration_qparams(n);
    const bool even = n.attr_string("rounding", "half_away_from_zero") == "half_to_even";
    const Tensor* fold = in.size() > 1 ? in[1] : nullptr;
    if (fold) check_float(n, *fold, "fold factors");
    const Tensor xf = fold ? apply_fold(x, *fold, false) : x;
    const Tensor q = even ? simd::quantize_tensor<simd::default_arch, RoundHalfToEven>(xf, p)
                          : simd::quantize_tensor<simd::default_arch, RoundHalfAwayFromZero>(xf, p);
    out[0] = fold ? apply_fold(simd::dequantize_tensor(q, p), *fold, true) : simd::dequantize_tensor(q, p);
}

}  // namespace ops
}  // namespace graph

BPUQ_NAMESPACE_END
