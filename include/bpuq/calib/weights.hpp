// Weight quantization: which initializers are weights, on which axis their output channels lie,
// and their symmetric per-output-channel parameters (threshold = max |w_c|, range [-127, 127], or
// the grid the weights already lie on).
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "../graph/ir.hpp"
#include "../quant/quantize.hpp"
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

/// The step of the grid a channel's weights already lie on, when every weight is an integer
/// multiple of it no larger than `qmax` (weights exported from a quantized model — e.g. a TFLite
/// uint8 model converted to float — keep their grid, per channel after BatchNorm folding); else 0.
/// The step is the smallest gap between the sorted distinct magnitudes (and zero), refined by least
/// squares, accepted only when every magnitude is within 1e-3 of a multiple of it: random float
/// weights never pass.
inline float weight_grid_step(const float* p, std::int64_t len, int qmax) {
    std::vector<float> v;
    v.reserve(std::size_t(len));
    for (std::int64_t i = 0; i < len; ++i)
        if (p[i] != 0.0f) v.push_back(std::fabs(p[i]));
    if (v.empty()) return 0.0f;
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    double step = v[0];
    for (std::size_t i = 1; i < v.size(); ++i) step = std::min(step, double(v[i]) - double(v[i - 1]));
    if (!(step > 0.0)) return 0.0f;
    // the gap of two float32 weights carries their rounding (relative error up to ~k * 2^-23):
    // assign each weight its multiple with that estimate, refine the step by least squares over
    // all of them, and only then require every weight to sit on the refined grid
    double kv = 0.0, kk = 0.0;
    for (float x : v) {
        const double k = std::round(double(x) / step);
        if (k > double(qmax) + 0.5) return 0.0f;
        kv += k * double(x);
        kk += k * k;
    }
    const double refined = kv / kk;
    for (float x : v) {
        const double k = double(x) / refined;
        if (k > double(qmax) + 1e-3 || std::fabs(k - std::round(k)) > 1e-3) return 0.0f;
    }
    return static_cast<float>(refined);
}

/// Symmetric narrow-range per-channel parameters along `axis` of a float weight tensor. A channel
/// whose weights lie on a grid that fits the range (weight_grid_step) takes the grid's step as
/// its scale, so its weights are represented exactly instead of being re-rounded.
inline QParams weight_qparams(const Tensor& w, int axis, int bits = 8) {
    BPUQ_CHECK(w.dtype() == DType::float32, "calib.weight", "weights must be float32, got " + std::string(dtype_name(w.dtype())));
    const auto rank = static_cast<int>(w.rank());
    if (axis < 0) axis += rank;
    BPUQ_CHECK(axis >= 0 && axis < rank, "calib.weight", "weight axis out of range for shape " + shape_to_string(w.shape()));
    const std::size_t C = static_cast<std::size_t>(w.dim(static_cast<std::size_t>(axis)));
    std::vector<float> lo(C, 0.0f), hi(C, 0.0f);
    // a channel's values may come in several runs (axis > 0): gather them for the grid test
    std::vector<std::vector<float>> values(C);
    for_each_channel_run(w.shape(), axis, C, [&](std::size_t c, std::int64_t off, std::int64_t len) {
        const float* p = w.data<float>() + off;
        for (std::int64_t i = 0; i < len; ++i) {
            BPUQ_CHECK(std::isfinite(p[i]), "calib.weight", "weight tensor holds a non-finite value");
            hi[c] = std::max(hi[c], std::fabs(p[i]));
        }
        values[c].insert(values[c].end(), p, p + len);
        lo[c] = -hi[c];
    });
    QParams q = qparams_from_ranges(lo, hi, axis, bits, true, /*narrow=*/true);
    for (std::size_t c = 0; c < C; ++c) {
        const float step = weight_grid_step(values[c].data(), std::int64_t(values[c].size()), q.qmax());
        if (step > 0.0f) q.scale[c] = step;
    }
    return q;
}

/// int16 weights for a node whose input is int16 (docs/ARITHMETIC.md, int16 nodes): per channel
/// threshold max |w_c|, raised where needed so that the int32 bias round(b_c / (s_in s_w[c]))
/// stays within 2^29 in magnitude (float rounding of the scales aside, far from int32's 2^31) —
/// with 16-bit inputs and weights the product scale is tiny.
inline QParams int16_weight_qparams(const Tensor& w, int axis, const Tensor* bias, float s_in) {
    QParams p = weight_qparams(w, axis, 16);
    if (!bias || bias->dtype() != DType::float32) return p;
    if (std::size_t(bias->numel()) != p.channels()) return p;  // a broadcast Gemm C: the lowering decides
    std::vector<float> lo(p.channels()), hi(p.channels());
    for (std::size_t c = 0; c < p.channels(); ++c) {
        const double need = std::fabs(double(bias->data<float>()[c])) / (double(s_in) * 536870912.0) * qmax_of(16);
        hi[c] = float(std::max(double(p.scale[c]) * qmax_of(16), need));
        lo[c] = -hi[c];
    }
    return qparams_from_ranges(lo, hi, p.axis, 16, true, /*narrow=*/true);
}

/// The factors folded into the weights of `n` (Conv, Gemm, MatMul) when its input `x` is
/// quantized per channel: the scale of the input channel each weight multiplies, as a tensor
/// broadcastable to the weights — [M, C/group, 1, 1] for Conv, [1, K] for Gemm with transB,
/// [K, 1] otherwise. The node then computes sum_c (w[., c] * s_x[c]) * (q_x[c] - zp): integer
/// inputs times weights quantized from w * F (docs/ARITHMETIC.md, per-channel activations).
inline Tensor weight_fold_factors(const graph::Node& n, const Tensor& w, const QParams& x) {
    BPUQ_CHECK(x.per_channel() && x.axis == 1, "calib.fold", n.describe() + ": weight folding needs an input quantized per channel on axis 1");
    const std::size_t C = x.scale.size();
    if (n.op_type == "Conv") {
        BPUQ_CHECK(w.rank() >= 3, "calib.fold", n.describe() + ": weights " + shape_to_string(w.shape()) + " are not a convolution's");
        const std::int64_t M = w.dim(0), cig = w.dim(1);
        BPUQ_CHECK(cig > 0 && C % std::size_t(cig) == 0 && M % std::int64_t(C / std::size_t(cig)) == 0, "calib.fold",
                   n.describe() + ": " + std::to_string(C) + " input channel scales do not match weights " + shape_to_string(w.shape()));
        const std::int64_t groups = std::int64_t(C) / cig, cog = M / groups;
        Shape fs(w.rank(), 1);
        fs[0] = M;
        fs[1] = cig;
        Tensor f(DType::float32, fs);
        for (std::int64_t o = 0; o < M; ++o)
            for (std::int64_t ci = 0; ci < cig; ++ci) f.data<float>()[o * cig + ci] = x.scale[std::size_t((o / cog) * cig + ci)];
        return f;
    }
    BPUQ_CHECK(w.rank() == 2, "calib.fold", n.describe() + ": weights " + shape_to_string(w.shape()) + " are not 2-D");
    const bool k_last = n.op_type == "Gemm" && n.attr_int("transB", 0) != 0;
    const std::int64_t K = k_last ? w.dim(1) : w.dim(0);
    BPUQ_CHECK(std::size_t(K) == C, "calib.fold",
               n.describe() + ": " + std::to_string(C) + " input channel scales do not match weights " + shape_to_string(w.shape()));
    return Tensor::from_vector<float>(k_last ? Shape{1, K} : Shape{K, 1}, x.scale);
}

/// The integers of weights `w` under `q`; folded (w * f) when `fold` is given.
inline Tensor quantize_weight(const Tensor& w, const QParams& q, const Tensor* fold) {
    return quantize_tensor(fold ? apply_fold(w, *fold, false) : w, q);
}

/// The float weights the integer model computes with: dequantize(quantize(w)), divided by the fold
/// factors when there are any (the input channel's scale moved back to the activation side).
inline Tensor fake_quantized_weight(const Tensor& w, const QParams& q, const Tensor* fold) {
    const Tensor back = dequantize_tensor(quantize_weight(w, q, fold), q);
    return fold ? apply_fold(back, *fold, true) : back;
}

/// The scale of the products a node's integer weights are multiplied with: the input's scale, or
/// 1 when the input is per channel (its scales are folded into the weights).
inline float weight_input_scale(const QParams& x) { return x.per_channel() ? 1.0f : x.scale[0]; }

/// Fold factors of every weight read by a BPU Conv/Gemm/MatMul whose input is per channel in
/// `activations` (weight name -> factors).
inline std::map<std::string, Tensor> weight_folds(const graph::Graph& g, const QuantPlan& plan,
                                                  const std::map<std::string, QParams>& activations) {
    std::map<std::string, Tensor> out;
    for (const auto& n : g.nodes) {
        auto np = plan.nodes.find(n.name);
        if (np == plan.nodes.end() || !np->second.on_bpu) continue;
        if (n.op_type != "Conv" && n.op_type != "Gemm" && n.op_type != "MatMul") continue;
        if (!n.has_input(1) || !g.is_initializer(n.inputs[1])) continue;
        auto x = activations.find(n.inputs[0]);
        if (x == activations.end() || !x->second.per_channel()) continue;
        BPUQ_CHECK(!out.count(n.inputs[1]), "calib.fold",
                   "weights '" + n.inputs[1] + "' are read by two nodes with per-channel inputs; they cannot take both folds");
        out[n.inputs[1]] = weight_fold_factors(n, *g.initializer(n.inputs[1]), x->second);
    }
    return out;
}

/// Parameters of every weight initializer read by a BPU node (Conv/Gemm/MatMul input 1): int8,
/// or int16 when the node's input tensor is int16 and `activations` (its scale) is given; the
/// plan's fixed_weights as they are.
inline std::map<std::string, QParams> quantize_weights(const graph::Graph& g, const QuantPlan& plan,
                                                       const std::map<std::string, QParams>* activations = nullptr) {
    std::map<std::string, QParams> out;
    const std::map<std::string, Tensor> folds = activations ? weight_folds(g, plan, *activations) : std::map<std::string, Tensor>{};
    for (const auto& n : g.nodes) {
        auto np = plan.nodes.find(n.name);
        if (np == plan.nodes.end() || !np->second.on_bpu) continue;
        for (std::size_t i = 0; i < n.inputs.size(); ++i) {
            int axis = weight_axis(n, i);
            if (axis == -1 || !g.is_initializer(n.inputs[i]) || out.count(n.inputs[i])) continue;
            const Tensor& w = *g.initializer(n.inputs[i]);
            if (w.dtype() != DType::float32) continue;
            if (axis == -2) axis = static_cast<int>(w.rank()) - 1;
            if (auto fixed = plan.fixed_weights.find(n.inputs[i]); fixed != plan.fixed_weights.end()) {
                out[n.inputs[i]] = fixed->second;
                continue;
            }
            const std::string& x = n.inputs[0];
            const auto in = activations ? activations->find(x) : std::map<std::string, QParams>::const_iterator{};
            // a float model output dequantized from the int32 accumulator keeps int8 weights: 16 x 16
            // bit products would not fit the int32 output
            const auto out_plan = n.outputs.empty() ? plan.tensors.end() : plan.tensors.find(n.outputs[0]);
            const bool int32_out = out_plan != plan.tensors.end() && out_plan->second.float_output;
            if (activations && in != activations->end() && in->second.bits == 16 && !int32_out) {
                const Tensor* bias = n.inputs.size() > 2 && g.is_initializer(n.inputs[2]) ? g.initializer(n.inputs[2]) : nullptr;
                out[n.inputs[i]] = int16_weight_qparams(w, axis, n.op_type == "MatMul" ? nullptr : bias, in->second.scale[0]);
            } else if (auto f = folds.find(n.inputs[i]); f != folds.end()) {
                out[n.inputs[i]] = weight_qparams(apply_fold(w, f->second, false), axis);  // per-channel input
            } else {
                out[n.inputs[i]] = weight_qparams(w, axis);
            }
        }
    }
    return out;
}

}  // namespace calib
BPUQ_NAMESPACE_END
