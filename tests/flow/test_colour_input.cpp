// Runtime input types (input_type_rt nv12 / yuv444 / a swapped rgb-bgr order): the inserted colour
// conversion is computed exactly as defined by the integer program, the calibrated model and the
// QDQ model; NV12 bytes reach the program through emul/runtime_input.hpp; calibration samples are
// converted; and a real model (MobileNet V2) keeps its accuracy with NV12 input.
#include <doctest/doctest.h>

#include <bpuq/emul/runtime_input.hpp>
#include <bpuq/flow/convert.hpp>

#include <onnx/checker.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "reference_samples.hpp"

using namespace bpuq;
namespace fs = std::filesystem;

namespace {

struct Temp {
    fs::path dir;
    explicit Temp(const std::string& name) : dir(fs::temp_directory_path() / ("bpuq_colour_" + name)) {
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    ~Temp() { fs::remove_all(dir); }
};


/// x -> MaxPool 1x1 -> y: the output is the converted pixels themselves (MaxPool shares its input's
/// parameters), so with set_model_output_int8 the program's output is the conversion's integers.
std::string write_passthrough_model(const fs::path& dir, const Shape& shape) {
    graph::Graph g;
    g.opset = 13;
    g.inputs = {"x"};
    g.outputs = {"y"};
    g.values["x"] = graph::Value{"x", DType::float32, true, shape, true, {}};
    graph::Node pool;
    pool.name = "pool";
    pool.op_type = "MaxPool";
    pool.inputs = {"x"};
    pool.outputs = {"y"};
    pool.attributes["kernel_shape"] = graph::Attribute::make_ints({1, 1});
    g.nodes = {pool};
    graph::infer_shapes(g);
    const std::string path = (dir / "passthrough.onnx").string();
    onnx_io::save_model(g, path);
    return path;
}

/// The conversion's definition (docs/CONVERT.md): (2 (Σ q12 x + b12) + 1) / 8192 rounded half up,
/// clamped to 0..255 — evaluated in integers.
std::int32_t expected_pixel(const flow::ColourMatrix& m, int row, const std::int32_t in[3]) {
    std::int64_t v = m.bias_q12[row];
    for (int k = 0; k < 3; ++k) v += std::int64_t(m.q12[row][k]) * in[k];
    const std::int64_t q13 = 2 * v + 1;
    const std::int64_t r = (q13 + 4096) >> 13;  // arithmetic shift: floor
    return static_cast<std::int32_t>(std::min<std::int64_t>(255, std::max<std::int64_t>(0, r)));
}

config::ConvertConfig passthrough_config(const std::string& model, const fs::path& work, const std::string& cal, const std::string& train,
                                         const std::string& rt, const std::string& layout, const std::string& range) {
    nlohmann::json j;
    j["model_parameters"] = {{"onnx_model", model}, {"output_model_file_prefix", "p"}, {"working_dir", work.string()}};
    j["input_parameters"] = {{"input_type_train", train}, {"input_type_rt", rt}, {"input_layout_train", layout}};
    if (!range.empty()) j["input_parameters"]["input_space_and_range"] = range;
    j["calibration_parameters"] = {{"cal_data_dir", cal}, {"calibration_type", "max"}, {"optimization", "set_model_output_int8"}};
    return config::parse_convert_config(j, "colour.yaml");
}

std::int64_t argmax(const Tensor& t) {
    const Tensor f = io::to_float32(t);
    return std::int64_t(std::max_element(f.data<float>(), f.data<float>() + f.numel()) - f.data<float>());
}

/// Random uint8-valued float samples in the training layout, written as .npy files.
std::string write_pixel_samples(const fs::path& dir, const Shape& shape, int n, unsigned seed) {
    fs::create_directories(dir);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> px(0, 255);
    for (int s = 0; s < n; ++s) {
        Tensor t(DType::float32, shape);
        for (std::int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(px(rng));
        io::write_npy((dir / ("s" + std::to_string(s) + ".npy")).string(), t);
    }
    return dir.string();
}

}  // namespace

TEST_CASE("colour matrices: BT.601 to 12 bits, and RGB -> YUV -> RGB returns within the YUV rounding") {
    config::InputSpec s;
    s.type_train = "rgb";
    s.type_rt = "nv12";
    const flow::ColourMatrix full = flow::colour_matrix(s);
    CHECK(full.q12[0][0] == 4096);
    CHECK(full.q12[0][2] == 5743);  // 1.402 * 4096 = 5742.6
    CHECK(full.q12[2][1] == 7258);  // 1.772
    s.space_and_range = "bt601_video";
    const flow::ColourMatrix video = flow::colour_matrix(s);
    CHECK(video.q12[2][1] == 8263);  // 2.017232: the largest, 16,526 as int16 Q13
    s.type_train = "bgr";
    const flow::ColourMatrix bgr = flow::colour_matrix(s);
    for (int k = 0; k < 3; ++k) CHECK(bgr.q12[0][k] == video.q12[2][k]);  // row 0 of BGR is blue
    // round trip on a grid of colours, both ranges
    for (const auto range : {io::YuvRange::full, io::YuvRange::video}) {
        config::InputSpec spec;
        spec.type_train = "rgb";
        spec.type_rt = "yuv444";
        spec.space_and_range = range == io::YuvRange::video ? "bt601_video" : "regular";
        if (range == io::YuvRange::video) spec.type_rt = "nv12";
        const flow::ColourMatrix m = flow::colour_matrix(spec);
        Tensor rgb(DType::float32, {1, 3, 32, 32});
        std::mt19937 rng(3);
        std::uniform_int_distribution<int> px(0, 255);
        for (std::int64_t i = 0; i < rgb.numel(); ++i) rgb.data<float>()[i] = float(px(rng));
        const Tensor yuv = io::rgb_to_yuv444(rgb, true, false, range);
        int worst = 0;
        for (std::int64_t p = 0; p < 1024; ++p) {
            const std::int32_t in[3] = {std::int32_t(yuv.data<float>()[p]), std::int32_t(yuv.data<float>()[1024 + p]),
                                        std::int32_t(yuv.data<float>()[2048 + p])};
            for (int c = 0; c < 3; ++c)
                worst = std::max(worst, std::abs(expected_pixel(m, c, in) - std::int32_t(rgb.data<float>()[c * 1024 + p])));
        }
        MESSAGE(std::string(range == io::YuvRange::full ? "full" : "video") << " range RGB -> YUV -> RGB: largest error " << worst);
        CHECK(worst <= (range == io::YuvRange::full ? 1 : 2));  // measured on these 1,024 colours
    }
}

TEST_CASE("NV12 bytes -> program input equals the NV12 chroma round trip of the YUV444 picture") {
    Tensor yuv(DType::float32, {1, 3, 6, 8});
    std::mt19937 rng(5);
    std::uniform_int_distribution<int> px(0, 255);
    for (std::int64_t i = 0; i < yuv.numel(); ++i) yuv.data<float>()[i] = float(px(rng));
    const Tensor nv12 = io::yuv444_to_nv12(yuv, true);
    CHECK(nv12.shape() == Shape{9, 8});
    emul::RuntimeInputFormat f;
    f.image = true;
    f.type_rt = "nv12";
    f.layout_rt = "NHWC";
    f.type_train = "rgb";
    f.layout_train = "NCHW";
    Tensor sample(DType::uint8, {1, 9, 8});
    std::copy(nv12.data<std::uint8_t>(), nv12.data<std::uint8_t>() + nv12.numel(), sample.data<std::uint8_t>());
    const Tensor in = emul::runtime_to_program_input(sample, f, {1, 3, 6, 8}, "x");
    const Tensor want = io::nv12_round_trip(yuv, true);
    for (std::int64_t i = 0; i < want.numel(); ++i) REQUIRE(in.data<float>()[i] == want.data<float>()[i]);
    // NHWC runtime layout into an NCHW program input
    f.type_rt = "rgb";
    Tensor nhwc(DType::uint8, {1, 6, 8, 3});
    for (std::int64_t i = 0; i < nhwc.numel(); ++i) nhwc.data<std::uint8_t>()[i] = std::uint8_t(i * 7);
    const Tensor t = emul::runtime_to_program_input(nhwc, f, {1, 3, 6, 8}, "x");
    CHECK(t.data<float>()[(2 * 6 + 5) * 8 + 7] == float(nhwc.data<std::uint8_t>()[(5 * 8 + 7) * 3 + 2]));
    // the wrong shape names the input, the expected shape and what it got
    f.type_rt = "nv12";
    CHECK_THROWS_WITH_AS(emul::runtime_to_program_input(Tensor(DType::uint8, {1, 6, 8}), f, {1, 3, 6, 8}, "x"),
                         doctest::Contains("program input 'x' takes nv12 pixels as uint8 [1x9x8]"), bpuq::Error);
}

TEST_CASE("NV12 / YUV444 / swapped runtime input: program, calibrated model and QDQ model compute the defined conversion") {
    struct Case {
        std::string train, rt, layout, range;
    };
    for (const Case& c : {Case{"rgb", "nv12", "NCHW", ""}, Case{"bgr", "nv12", "NCHW", "bt601_video"}, Case{"rgb", "yuv444", "NHWC", ""},
                          Case{"bgr", "rgb", "NCHW", ""}}) {
        CAPTURE(c.train);
        CAPTURE(c.rt);
        CAPTURE(c.layout);
        Temp t("pass_" + c.train + "_" + c.rt + "_" + c.layout);
        const bool nchw = c.layout == "NCHW";
        const Shape shape = nchw ? Shape{1, 3, 6, 8} : Shape{1, 6, 8, 3};
        const std::string model = write_passthrough_model(t.dir, shape);
        const std::string cal = write_pixel_samples(t.dir / "cal", shape, 3, 17);
        const config::ConvertConfig cfg = passthrough_config(model, t.dir / "out", cal, c.train, c.rt, c.layout, c.range);
        std::ostringstream console;
        const flow::ConvertResult r = flow::convert(cfg, console, {1, 0});
        CHECK(console.str().find("colour conversion") != std::string::npos);
        const emul::Program prog = emul::load_program_file(r.artifacts.at("integer_program"));
        const emul::RuntimeInputFormat f = emul::runtime_input_format(prog, "x");
        CHECK(f.image);
        CHECK(f.type_rt == c.rt);
        emul::ProgramExecutor exec(prog);
        graph::Executor calibrated{onnx_io::load_model(r.artifacts.at("calibrated_model"))};
        graph::Executor original{onnx_io::load_model(r.artifacts.at("original_float_model"))};
        REQUIRE(r.artifacts.count("quantized_model"));
        const graph::Graph qdq_graph = onnx_io::load_model(r.artifacts.at("quantized_model"));
        CHECK_NOTHROW(::onnx::checker::check_model(onnx_io::export_model(qdq_graph)));
        graph::Executor qdq{graph::Graph(qdq_graph)};
        graph::ExecContext ctx(1);
        const flow::ColourMatrix m = flow::colour_matrix(cfg.inputs[0]);
        std::mt19937 rng(23);
        std::uniform_int_distribution<int> px(0, 255);
        for (int trial = 0; trial < 4; ++trial) {
            // a runtime sample as the device feeds it
            const Shape rs = emul::runtime_input_shape(f, shape);
            Tensor raw(DType::uint8, rs);
            for (std::int64_t i = 0; i < raw.numel(); ++i) raw.data<std::uint8_t>()[i] = std::uint8_t(px(rng));
            const Tensor in = emul::runtime_to_program_input(raw, f, shape, "x");
            const Tensor y = exec.run({in})[0];
            REQUIRE(y.dtype() == DType::int8);
            const Tensor yc = calibrated.run({in}, ctx)[0];
            const Tensor yo = original.run({in}, ctx)[0];
            const Tensor yq_raw = qdq.run({in}, ctx)[0];
            const bool qdq_int8 = yq_raw.dtype() == DType::int8;
            const Tensor yq = io::to_float32(yq_raw);
            const io::PixelLayout l = io::PixelLayout::of(in, nchw);
            std::int64_t mismatches = 0, qdq_mismatches = 0;
            double worst_float = 0;
            for (std::int64_t yy = 0; yy < l.h; ++yy)
                for (std::int64_t xx = 0; xx < l.w; ++xx) {
                    const std::int32_t px3[3] = {std::int32_t(in.data<float>()[l.at(0, yy, xx)]), std::int32_t(in.data<float>()[l.at(1, yy, xx)]),
                                                 std::int32_t(in.data<float>()[l.at(2, yy, xx)])};
                    for (int ch = 0; ch < 3; ++ch) {
                        const std::int32_t want = expected_pixel(m, ch, px3);
                        const std::int64_t at = l.at(ch, yy, xx);
                        mismatches += std::int32_t(y.data<std::int8_t>()[at]) + 128 != want;
                        mismatches += yc.data<float>()[at] != float(want);
                        qdq_mismatches += yq.data<float>()[at] + (qdq_int8 ? 128.0f : 0.0f) != float(want);
                        worst_float = std::max(worst_float, std::fabs(double(yo.data<float>()[at]) - want));
                    }
                }
            CHECK(mismatches == 0);
            CHECK(qdq_mismatches == 0);
            CHECK(worst_float <= 0.5 + 1e-4);  // the float model does not round to pixels
        }
    }
}

TEST_CASE("bad runtime input configs name the key") {
    Temp t("bad");
    const Shape odd{1, 3, 5, 8};
    const std::string model = write_passthrough_model(t.dir, odd);
    const std::string cal = write_pixel_samples(t.dir / "cal", odd, 1, 1);
    const config::ConvertConfig cfg = passthrough_config(model, t.dir / "out", cal, "rgb", "nv12", "NCHW", "");
    std::ostringstream console;
    CHECK_THROWS_WITH_AS(flow::convert(cfg, console, {1, 0}), doctest::Contains("input_type_rt nv12 on input 'x' needs an even height and width"),
                         bpuq::Error);
    CHECK_FALSE(fs::exists(t.dir / "out" / "p.bpuq"));
}

TEST_CASE("MobileNet V2 with NV12 runtime input: calibration on converted samples, accuracy kept") {
    if (!bpuq_test::path_exists(bpuq_test::data_dir() + "/imagenet/models/mobilenet_v2_1.0_224_fp32.onnx")) {
        MESSAGE("skipped: MobileNet V2 not under " << bpuq_test::data_dir());
        return;
    }
    Temp t("mv2");
    const std::string cal = bpuq_test::write_reference_samples("mobilenet_v2_1.0_224_fp32", t.dir / "cal", 128.0f, 128.0f);
    auto run = [&](const std::string& rt) {
        nlohmann::json j;
        j["model_parameters"] = {{"onnx_model", bpuq_test::data_dir() + "/imagenet/models/mobilenet_v2_1.0_224_fp32.onnx"},
                                 {"output_model_file_prefix", "mv2"},
                                 {"working_dir", (t.dir / ("out_" + rt)).string()}};
        j["input_parameters"] = {{"input_type_train", "rgb"},      {"input_type_rt", rt},      {"norm_type", "data_mean_and_scale"},
                                 {"mean_value", "128"},            {"scale_value", "0.0078125"}};
        j["calibration_parameters"] = {{"cal_data_dir", cal}, {"calibration_type", "max"}};
        std::ostringstream console;
        return flow::convert(config::parse_convert_config(j, "mv2.yaml"), console, {2, 0});
    };
    const flow::ConvertResult rgb = run("rgb"), nv12 = run("nv12");
    config::InputSpec nv12spec;
    nv12spec.type_train = "rgb";
    nv12spec.type_rt = "nv12";
    const double c_rgb = rgb.report.at("outputs").at(0).at("cosine_similarity").get<double>();
    const double c_nv12 = nv12.report.at("outputs").at(0).at("cosine_similarity").get<double>();
    MESSAGE("MobileNet V2 program vs its float model, output cosine: rgb " << c_rgb << ", nv12 " << c_nv12);
    CHECK(c_nv12 > c_rgb - 0.01);
    // the NV12 program on the device's bytes vs the RGB float source model on the same pictures
    const emul::Program prog = emul::load_program_file(nv12.artifacts.at("integer_program"));
    const emul::RuntimeInputFormat f = emul::runtime_input_format(prog, prog.tensors[std::size_t(prog.inputs[0])].name);
    emul::ProgramExecutor exec(prog);
    graph::Executor src{onnx_io::load_model(rgb.artifacts.at("original_float_model"))};
    graph::ExecContext ctx(2);
    graph::Executor orig_nv12{onnx_io::load_model(nv12.artifacts.at("original_float_model"))};
    const flow::ColourMatrix m = flow::colour_matrix(nv12spec);
    int agree = 0, n = 0;
    for (const auto& file : fs::directory_iterator(cal)) {
        const Tensor pixels = io::read_npy(file.path().string());
        const Tensor yuv = io::rgb_to_yuv444(pixels, true, false, io::YuvRange::full);
        const Tensor nv = io::yuv444_to_nv12(yuv, true);
        Tensor sample(DType::uint8, {1, nv.dim(0), nv.dim(1)});
        std::copy(nv.data<std::uint8_t>(), nv.data<std::uint8_t>() + nv.numel(), sample.data<std::uint8_t>());
        const Tensor a = exec.run({emul::runtime_to_program_input(sample, f, pixels.shape(), "input")})[0];
        const Tensor b = src.run({pixels}, ctx)[0];
        agree += argmax(a) == argmax(b);
        // the NV12 original float model equals the source model fed the conversion's exact RGB
        const Tensor yuv_in = flow::calibration_sample_to_model_input(pixels, nv12spec);
        Tensor rgb_exact(DType::float32, pixels.shape());
        const std::int64_t plane = 224 * 224;
        for (std::int64_t p = 0; p < plane; ++p)
            for (int r = 0; r < 3; ++r) {
                double v = (double(m.bias_q12[r]) + 0.5) / 4096.0;
                for (int k = 0; k < 3; ++k) v += m.q12[r][k] / 4096.0 * yuv_in.data<float>()[k * plane + p];
                rgb_exact.data<float>()[r * plane + p] = float(std::min(255.0, std::max(0.0, v)));
            }
        const ErrorStats e = compare(src.run({rgb_exact}, ctx)[0], orig_nv12.run({yuv_in}, ctx)[0]);
        MESSAGE("NV12 original float model vs the source model on the converted RGB: max |diff| " << e.chebyshev);
        CHECK(e.chebyshev < 1e-4);
        ++n;
    }
    MESSAGE("NV12 program top-1 equals the RGB float model's on " << agree << " of " << n << " reference images");
    CHECK(agree >= n - 1);
}
