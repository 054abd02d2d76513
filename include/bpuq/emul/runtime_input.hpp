// What the device feeds a program input (input_type_rt / input_layout_rt, recorded in the program's
// metadata by bpuq_convert) and its conversion to the program input tensor: NV12 chroma upsampled
// to YUV444, runtime layout to training layout. Pure data movement, so exact. Std only (firmware).
#pragma once

#include <cstdint>
#include <string>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "program.hpp"

BPUQ_NAMESPACE_BEGIN
namespace emul {

/// The runtime format of one program input (metadata keys "input.<name>.type_rt", ...).
/// `image` is false for feature maps and for programs written before the keys existed.
struct RuntimeInputFormat {
    bool image = false;
    std::string type_rt, layout_rt, type_train, layout_train, space_and_range;
};

inline RuntimeInputFormat runtime_input_format(const Program& p, const std::string& input) {
    RuntimeInputFormat f;
    auto get = [&](const char* key) {
        auto it = p.metadata.find("input." + input + "." + key);
        return it == p.metadata.end() ? std::string() : it->second;
    };
    f.type_rt = get("type_rt");
    f.layout_rt = get("layout_rt");
    f.type_train = get("type_train");
    f.layout_train = get("layout_train");
    f.space_and_range = get("space_and_range");
    f.image = !f.type_rt.empty() && f.type_rt != "featuremap" && !f.type_train.empty();
    return f;
}

/// The shape of one runtime sample: NV12 is {1, H * 3 / 2, W} (the Y plane, then interleaved U, V
/// rows); other image types are {1, C, H, W} or {1, H, W, C} as layout_rt says.
inline Shape runtime_input_shape(const RuntimeInputFormat& f, const Shape& program_shape) {
    if (!f.image) return program_shape;
    BPUQ_CHECK(program_shape.size() == 4, "runtime.shape", "an image program input must be 4-D, got " + shape_to_string(program_shape));
    const bool nchw = f.layout_train == "NCHW";
    const std::int64_t c = nchw ? program_shape[1] : program_shape[3], h = nchw ? program_shape[2] : program_shape[1],
                       w = nchw ? program_shape[3] : program_shape[2];
    if (f.type_rt == "nv12") return {program_shape[0], h * 3 / 2, w};
    return f.layout_rt == "NCHW" ? Shape{program_shape[0], c, h, w} : Shape{program_shape[0], h, w, c};
}

/// One runtime sample (uint8, runtime_input_shape) -> the program input (float32 pixels in the
/// training layout, the model input's colour type: NV12 becomes YUV444 with each chroma sample
/// repeated over its 2x2 block). Errors name the input and the expected shape and dtype.
inline Tensor runtime_to_program_input(const Tensor& x, const RuntimeInputFormat& f, const Shape& program_shape,
                                       const std::string& input) {
    const Shape rs = runtime_input_shape(f, program_shape);
    BPUQ_CHECK(x.dtype() == DType::uint8 && x.shape() == rs, "runtime.input",
               "program input '" + input + "' takes " + (f.type_rt.empty() ? std::string("data") : f.type_rt) + " pixels as uint8 " +
                   shape_to_string(rs) + (f.type_rt == "nv12" ? " (NV12: Y plane, then interleaved U, V rows)" : " (layout " + f.layout_rt + ")") +
                   "; got " + dtype_name(x.dtype()) + " " + shape_to_string(x.shape()));
    BPUQ_CHECK(f.image && program_shape[0] == 1, "runtime.input",
               "program input '" + input + "': runtime conversion needs an image input of batch 1, got " + shape_to_string(program_shape));
    const bool nchw = f.layout_train == "NCHW";
    const std::int64_t c = nchw ? program_shape[1] : program_shape[3], h = nchw ? program_shape[2] : program_shape[1],
                       w = nchw ? program_shape[3] : program_shape[2];
    Tensor out(DType::float32, program_shape);
    float* o = out.data<float>();
    const std::uint8_t* in = x.data<std::uint8_t>();
    auto at = [&](std::int64_t ch, std::int64_t y, std::int64_t xx) { return nchw ? (ch * h + y) * w + xx : (y * w + xx) * c + ch; };
    if (f.type_rt == "nv12") {
        BPUQ_CHECK(c == 3 && h % 2 == 0 && w % 2 == 0, "runtime.input",
                   "program input '" + input + "' is NV12 but has shape " + shape_to_string(program_shape));
        for (std::int64_t y = 0; y < h; ++y)
            for (std::int64_t xx = 0; xx < w; ++xx) {
                const std::uint8_t* uv = in + (h + y / 2) * w + (xx / 2) * 2;
                o[at(0, y, xx)] = in[y * w + xx];
                o[at(1, y, xx)] = uv[0];
                o[at(2, y, xx)] = uv[1];
            }
        return out;
    }
    const bool rt_nchw = f.layout_rt == "NCHW";
    for (std::int64_t ch = 0; ch < c; ++ch)
        for (std::int64_t y = 0; y < h; ++y)
            for (std::int64_t xx = 0; xx < w; ++xx)
                o[at(ch, y, xx)] = in[rt_nchw ? (ch * h + y) * w + xx : (y * w + xx) * c + ch];
    return out;
}

}  // namespace emul
BPUQ_NAMESPACE_END
