// Runtime input types (SPEC §1.1): the colour conversion from what the device is fed (input_type_rt;
// NV12 arrives as YUV444) to what the model was trained on (input_type_train), inserted at the
// model input as a 1x1 Conv with fixed-point BT.601 coefficients, and the matching conversion of
// calibration samples. Definitions and the exactness argument: docs/CONVERT.md "Runtime input types".
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../calib/quant_plan.hpp"
#include "../config/convert_config.hpp"
#include "../graph/ir.hpp"
#include "../io/colour.hpp"

BPUQ_NAMESPACE_BEGIN
namespace flow {

/// The colour type of the model input as bpuq feeds it: the runtime type, except NV12, whose
/// chroma is upsampled to YUV444 at the program input (emul/runtime_input.hpp).
inline std::string model_input_colour(const config::InputSpec& s) { return s.type_rt == "nv12" ? "yuv444" : s.type_rt; }

/// True when the model input needs a colour conversion in front of the trained network.
inline bool needs_colour_conversion(const config::InputSpec& s) {
    return s.is_image() && model_input_colour(s) != s.type_train;
}

/// The conversion as integers: out[r] = (Σ_c q12[r][c] · in[c] + bias_q12[r]) / 4096, evaluated
/// with a tie-break of half a Q13 unit (docs/CONVERT.md). Rows are the training channels in their
/// order, columns the model input's channels in theirs.
struct ColourMatrix {
    std::int32_t q12[3][3] = {};
    std::int32_t bias_q12[3] = {};
};

/// Coefficients 12 fractional bits (BT.601 to within 1.2e-4): the largest, 2.017 of video range,
/// is 8263, doubled 16,526 — inside int16, which the program stores them as.
inline ColourMatrix colour_matrix(const config::InputSpec& s) {
    ColourMatrix m;
    auto q = [](double c) { return static_cast<std::int32_t>(std::lround(c * 4096.0)); };
    const std::string from = model_input_colour(s), to = s.type_train;
    auto rgb_row = [&](int rgb_index) { return to == "bgr" ? 2 - rgb_index : rgb_index; };  // R,G,B -> row
    if (from == "rgb" || from == "bgr") {  // a channel swap
        BPUQ_CHECK((to == "rgb" || to == "bgr") && from != to, "config.colour", "no conversion from " + from + " to " + to);
        for (int r = 0; r < 3; ++r) m.q12[r][2 - r] = 4096;
        return m;
    }
    BPUQ_CHECK(from == "yuv444" && (to == "rgb" || to == "bgr"), "config.colour",
               "no colour conversion from input_type_rt " + s.type_rt + " to input_type_train " + to);
    const bool video = s.space_and_range == "bt601_video";
    // columns Y, U, V; rows R, G, B
    const double full[3][3] = {{1.0, 0.0, 1.402}, {1.0, -0.344136, -0.714136}, {1.0, 1.772, 0.0}};
    const double vid[3][3] = {{1.164383, 0.0, 1.596027}, {1.164383, -0.391762, -0.812968}, {1.164383, 2.017232, 0.0}};
    const double y_offset = video ? 16.0 : 0.0;
    for (int c = 0; c < 3; ++c) {
        const int r = rgb_row(c);
        std::int64_t bias = 0;
        for (int k = 0; k < 3; ++k) {
            m.q12[r][k] = q(video ? vid[c][k] : full[c][k]);
            bias -= std::int64_t(m.q12[r][k]) * std::int64_t(k == 0 ? y_offset : 128.0);
        }
        m.bias_q12[r] = static_cast<std::int32_t>(bias);
    }
    return m;
}

/// The names of what insert_colour_conversion added (empty node = nothing inserted).
struct ColourConversion {
    std::string conv_node;  ///< the 1x1 Conv
    std::string clip_node;  ///< the Clip(0, 255) after it (fused into the Conv by graph::optimize)
    std::string weights;    ///< the Conv's weight initializer
    std::string output;     ///< the converted tensor (training colour and layout)
};

/// Inserts the conversion after graph input `input` (before any mean/scale): Conv 1x1 with the
/// matrix (weights k/4096, bias (2·b + 1)/8192, exact in float32) and Clip to 0..255; an NHWC
/// input is transposed to NCHW around the Conv. Every former reader of the input reads the
/// converted tensor.
inline ColourConversion insert_colour_conversion(graph::Graph& g, const std::string& input, const config::InputSpec& spec) {
    ColourConversion cc;
    if (!needs_colour_conversion(spec)) return cc;
    const graph::Value* v = g.find_value(input);
    BPUQ_CHECK(v && v->has_shape && v->shape.size() == 4, "config.colour",
               "input_type_rt " + spec.type_rt + " on input '" + input + "' needs a 4-D image input; it is " +
                   (v && v->has_shape ? shape_to_string(v->shape) : "of unknown shape"));
    const bool nchw = spec.layout_train == "NCHW";
    const std::int64_t channels = nchw ? v->shape[1] : v->shape[3];
    BPUQ_CHECK(channels == 3, "config.colour",
               "input_type_rt " + spec.type_rt + " on input '" + input + "' needs 3 channels in layout " + spec.layout_train + "; the input is " +
                   shape_to_string(v->shape));
    if (spec.type_rt == "nv12") {
        const std::int64_t h = nchw ? v->shape[2] : v->shape[1], w = nchw ? v->shape[3] : v->shape[2];
        BPUQ_CHECK(h % 2 == 0 && w % 2 == 0, "config.colour",
                   "input_type_rt nv12 on input '" + input + "' needs an even height and width; the input is " + shape_to_string(v->shape));
    }
    const ColourMatrix m = colour_matrix(spec);
    std::vector<float> wv(9), bv(3);
    for (int r = 0; r < 3; ++r) {
        for (int c = 0; c < 3; ++c) wv[std::size_t(r * 3 + c)] = static_cast<float>(m.q12[r][c]) / 4096.0f;
        bv[std::size_t(r)] = static_cast<float>(2 * std::int64_t(m.bias_q12[r]) + 1) / 8192.0f;
    }
    std::vector<graph::Node> added;
    std::string current = input;
    auto transpose = [&](const std::vector<std::int64_t>& perm, const std::string& what) {
        graph::Node t;
        t.name = g.unique_name(input + "_colour_" + what);
        t.op_type = "Transpose";
        t.inputs = {current};
        t.outputs = {g.unique_name(input + "_colour_" + what + "_out")};
        t.attributes["perm"] = graph::Attribute::make_ints(perm);
        current = t.outputs[0];
        added.push_back(t);
    };
    if (!nchw) transpose({0, 3, 1, 2}, "to_nchw");
    cc.weights = g.unique_name(input + "_colour_matrix");
    const std::string bias = g.unique_name(input + "_colour_offset");
    g.initializers[cc.weights] = Tensor::from_vector<float>({3, 3, 1, 1}, wv);
    g.initializers[bias] = Tensor::from_vector<float>({3}, bv);
    graph::Node conv;
    conv.name = cc.conv_node = g.unique_name(input + "_colour_conversion");
    conv.op_type = "Conv";
    conv.inputs = {current, cc.weights, bias};
    conv.outputs = {g.unique_name(input + "_" + spec.type_train + "_unclipped")};
    conv.attributes["kernel_shape"] = graph::Attribute::make_ints({1, 1});
    current = conv.outputs[0];
    added.push_back(conv);
    graph::Node clip;
    clip.name = cc.clip_node = g.unique_name(input + "_colour_clip");
    clip.op_type = "Clip";
    clip.inputs = {current};
    clip.outputs = {g.unique_name(input + "_" + spec.type_train)};
    if (g.opset < 11) {
        clip.attributes["min"] = graph::Attribute::make_float(0.0f);
        clip.attributes["max"] = graph::Attribute::make_float(255.0f);
    } else {
        const std::string lo = g.unique_name(input + "_colour_min"), hi = g.unique_name(input + "_colour_max");
        g.initializers[lo] = Tensor::from_vector<float>({}, {0.0f});
        g.initializers[hi] = Tensor::from_vector<float>({}, {255.0f});
        clip.inputs = {current, lo, hi};
    }
    current = clip.outputs[0];
    added.push_back(clip);
    if (!nchw) transpose({0, 2, 3, 1}, "to_nhwc");
    cc.output = current;
    g.values[current] = graph::Value{current, DType::float32, true, v->shape, true, {}};
    for (auto& n : g.nodes)
        for (auto& i : n.inputs)
            if (i == input) i = current;
    for (auto& o : g.outputs)
        if (o == input) o = current;
    g.nodes.insert(g.nodes.begin(), added.begin(), added.end());
    return cc;
}

/// Makes the plan treat the conversion as the device does: its weights are the exact fixed-point
/// coefficients (int16, scale 2^-13 — calib::QuantPlan::fixed_weights) and its output is pixels
/// (int8 x - 128, scale 1), like an image input. Nodes the optimizer removed or fused are skipped.
inline void fix_colour_conversion(calib::QuantPlan& plan, const graph::Graph& g, const ColourConversion& cc) {
    if (cc.conv_node.empty()) return;
    const QParams pixels = qparams_from_range(0.0f, 255.0f, 8, /*symmetric=*/false);
    for (const std::string& name : {cc.conv_node, cc.clip_node}) {
        const std::int64_t k = g.find_node(name);
        if (k < 0) continue;
        const graph::Node& n = g.nodes[std::size_t(k)];
        auto np = plan.nodes.find(n.name);
        if (np == plan.nodes.end() || !np->second.on_bpu) continue;
        auto t = plan.tensors.find(n.outputs[0]);
        if (t != plan.tensors.end() && t->second.quantized && t->second.bits == 8 && t->second.alias_of.empty()) {
            t->second.fixed = true;
            t->second.fixed_params = pixels;
        }
        if (n.op_type == "Conv" && n.inputs.size() > 1 && n.inputs[1] == cc.weights) {
            QParams w;
            w.bits = 16;
            w.axis = 0;
            w.scale.assign(3, 1.0f / 8192.0f);
            w.zero_point.assign(3, 0);
            w.symmetric = true;
            w.narrow = true;
            plan.fixed_weights[cc.weights] = w;
        }
    }
    plan.notes.push_back("colour conversion '" + cc.conv_node + "': fixed-point BT.601 coefficients (int16, scale 2^-13), output int8 pixels x - 128");
}

/// Converts a calibration sample given in the training colour type (as SPEC §1.1 asks users to
/// provide it) into what the model input receives: RGB/BGR -> YUV444 (rounded to pixels), the
/// NV12 chroma round trip, or a channel swap. Layout: the training layout.
inline Tensor calibration_sample_to_model_input(const Tensor& sample, const config::InputSpec& spec) {
    if (!spec.is_image() || spec.type_rt == spec.type_train) return sample;
    const bool nchw = spec.layout_train == "NCHW";
    const std::string from = spec.type_train, to = model_input_colour(spec);
    Tensor t = sample;
    if (to == "yuv444" && from != "yuv444")
        t = io::rgb_to_yuv444(t, nchw, from == "bgr", spec.space_and_range == "bt601_video" ? io::YuvRange::video : io::YuvRange::full);
    if (to == "rgb" || to == "bgr") {  // rgb <-> bgr: swap channels 0 and 2
        const io::PixelLayout l = io::PixelLayout::of(t, nchw);
        Tensor s = t.clone();
        for (std::int64_t y = 0; y < l.h; ++y)
            for (std::int64_t x = 0; x < l.w; ++x)
                for (std::int64_t c = 0; c < 3; ++c) s.data<float>()[l.at(c, y, x)] = t.data<float>()[l.at(2 - c, y, x)];
        t = s;
    }
    if (spec.type_rt == "nv12") t = io::nv12_round_trip(t, nchw);
    return t;
}

}  // namespace flow
BPUQ_NAMESPACE_END
