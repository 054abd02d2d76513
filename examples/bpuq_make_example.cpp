// bpuq_make_example: creates the default that ships with the project — a small CNN classifier for
// synthetic shape images (its classifier layer fitted by least squares on generated data), a
// calibration set, an evaluation set and a bpuq_convert config — so the quick start needs no
// download. Deterministic: the same files on every run.
#include <bpuq/graph/executor.hpp>
#include <bpuq/io/atomic_file.hpp>
#include <bpuq/io/npy.hpp>
#include <bpuq/onnx/export.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>

namespace {

using namespace bpuq;
constexpr int kSize = 32, kClasses = 4;
const char* kClassNames[kClasses] = {"horizontal_bars", "vertical_bars", "disc", "square"};

/// One RGB image [3, 32, 32] of uint8 pixels showing a shape of class `label` on a noisy background.
Tensor draw(int label, std::mt19937& g) {
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    std::normal_distribution<float> noise(0.0f, 12.0f);
    float fg[3], bg[3];
    for (int c = 0; c < 3; ++c) {
        bg[c] = 40.0f + 80.0f * u(g);
        fg[c] = bg[c] + (u(g) < 0.5f ? -1.0f : 1.0f) * (60.0f + 60.0f * u(g));
    }
    const float cx = 10.0f + 12.0f * u(g), cy = 10.0f + 12.0f * u(g), r = 5.0f + 5.0f * u(g);
    const float period = 4.0f + 4.0f * u(g), phase = period * u(g);
    Tensor t(DType::uint8, {3, kSize, kSize});
    for (int y = 0; y < kSize; ++y)
        for (int x = 0; x < kSize; ++x) {
            bool on = false;
            switch (label) {
                case 0: on = std::fmod(y + phase, period) < period / 2; break;
                case 1: on = std::fmod(x + phase, period) < period / 2; break;
                case 2: on = (x - cx) * (x - cx) + (y - cy) * (y - cy) < r * r; break;
                case 3: on = std::fabs(x - cx) < r && std::fabs(y - cy) < r; break;
            }
            for (int c = 0; c < 3; ++c) {
                const float v = (on ? fg[c] : bg[c]) + noise(g);
                t.data<std::uint8_t>()[(c * kSize + y) * kSize + x] = static_cast<std::uint8_t>(std::min(255.0f, std::max(0.0f, v)));
            }
        }
    return t;
}

Tensor as_float_batch(const Tensor& img) {
    Tensor f(DType::float32, {1, 3, kSize, kSize});
    for (std::int64_t i = 0; i < img.numel(); ++i) f.data<float>()[i] = img.data<std::uint8_t>()[i];
    return f;
}

graph::Node node(const std::string& name, const std::string& op, std::vector<std::string> in, std::vector<std::string> out) {
    graph::Node n;
    n.name = name;
    n.op_type = op;
    n.inputs = std::move(in);
    n.outputs = std::move(out);
    return n;
}

/// The feature extractor: two conv layers with fixed oriented filters and seeded random mixing,
/// ReLU, pooling. Inputs are RGB 0..255 (the model normalizes nothing; the config does).
graph::Graph feature_graph() {
    graph::Graph g;
    g.name = "shapes_cnn";
    g.opset = 13;
    g.inputs = {"image"};
    graph::Value& in = g.value("image");
    in.dtype = DType::float32;
    in.has_dtype = true;
    in.shape = {1, 3, kSize, kSize};
    in.has_shape = true;
    std::mt19937 rng(7);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    // conv1: 8 filters 3x3 over grey = mean of RGB: edges in 4 orientations, both polarities
    const float kernels[4][9] = {{-1, -2, -1, 0, 0, 0, 1, 2, 1},   // horizontal edge
                                 {-1, 0, 1, -2, 0, 2, -1, 0, 1},   // vertical edge
                                 {0, 1, 2, -1, 0, 1, -2, -1, 0},   // diagonal
                                 {-2, -1, 0, -1, 0, 1, 0, 1, 2}};  // other diagonal
    Tensor w1(DType::float32, {8, 3, 3, 3}), b1(DType::float32, {8});
    for (int o = 0; o < 8; ++o)
        for (int c = 0; c < 3; ++c)
            for (int k = 0; k < 9; ++k)
                w1.data<float>()[(o * 3 + c) * 9 + k] = (o < 4 ? 1.0f : -1.0f) * kernels[o % 4][k] / (3.0f * 255.0f) + 0.01f * nd(rng);
    Tensor w2(DType::float32, {16, 8, 3, 3}), b2(DType::float32, {16});
    // the first 8 outputs pass conv1's orientation energies through (centre tap), the rest mix them
    for (int o = 0; o < 16; ++o)
        for (int c = 0; c < 8; ++c)
            for (int k = 0; k < 9; ++k)
                w2.data<float>()[(o * 8 + c) * 9 + k] = o < 8 ? (o == c && k == 4 ? 1.0f : 0.0f) : 0.1f * nd(rng);
    for (int o = 8; o < 16; ++o) b2.data<float>()[o] = 0.05f * nd(rng);
    g.initializers["conv1_w"] = w1;
    g.initializers["conv1_b"] = b1;
    g.initializers["conv2_w"] = w2;
    g.initializers["conv2_b"] = b2;
    auto conv = [&](const std::string& name, const std::string& x, const std::string& w, const std::string& b, const std::string& y) {
        graph::Node n = node(name, "Conv", {x, w, b}, {y});
        n.attributes["kernel_shape"] = graph::Attribute::make_ints({3, 3});
        n.attributes["pads"] = graph::Attribute::make_ints({1, 1, 1, 1});
        return n;
    };
    g.nodes.push_back(conv("conv1", "image", "conv1_w", "conv1_b", "conv1"));
    g.nodes.push_back(node("relu1", "Relu", {"conv1"}, {"relu1"}));
    graph::Node pool = node("pool1", "MaxPool", {"relu1"}, {"pool1"});
    pool.attributes["kernel_shape"] = graph::Attribute::make_ints({2, 2});
    pool.attributes["strides"] = graph::Attribute::make_ints({2, 2});
    g.nodes.push_back(pool);
    g.nodes.push_back(conv("conv2", "pool1", "conv2_w", "conv2_b", "conv2"));
    g.nodes.push_back(node("relu2", "Relu", {"conv2"}, {"relu2"}));
    g.nodes.push_back(node("gap", "GlobalAveragePool", {"relu2"}, {"gap"}));
    graph::Node flat = node("flatten", "Flatten", {"gap"}, {"features"});
    flat.attributes["axis"] = graph::Attribute::make_int(1);
    g.nodes.push_back(flat);
    g.outputs = {"features"};
    return g;
}

int run(const std::string& out_dir) {
    namespace fs = std::filesystem;
    fs::create_directories(out_dir);
    graph::Graph g = feature_graph();
    graph::Executor features{graph::Graph(g)};
    graph::ExecContext ctx(1);

    // fit the classifier on generated training images: ridge regression onto one-hot targets
    std::mt19937 data_rng(2024);
    const int train = 800, feat = 16;
    Eigen::MatrixXd X(train, feat + 1), Y = Eigen::MatrixXd::Zero(train, kClasses);
    for (int i = 0; i < train; ++i) {
        const int label = i % kClasses;
        const Tensor f = features.run({as_float_batch(draw(label, data_rng))}, ctx)[0];
        for (int k = 0; k < feat; ++k) X(i, k) = f.data<float>()[k];
        X(i, feat) = 1.0;
        Y(i, label) = 1.0;
    }
    Eigen::MatrixXd A = X.transpose() * X;
    A += 1e-2 * (A.trace() / double(feat + 1)) * Eigen::MatrixXd::Identity(feat + 1, feat + 1);  // well-conditioned fit
    const Eigen::MatrixXd W = A.ldlt().solve(X.transpose() * Y);  // [feat + 1, classes]
    Tensor fc_w(DType::float32, {kClasses, feat}), fc_b(DType::float32, {kClasses});
    for (int c = 0; c < kClasses; ++c) {
        for (int k = 0; k < feat; ++k) fc_w.data<float>()[c * feat + k] = static_cast<float>(4.0 * W(k, c));
        fc_b.data<float>()[c] = static_cast<float>(4.0 * W(feat, c));
    }
    g.initializers["fc_w"] = fc_w;
    g.initializers["fc_b"] = fc_b;
    graph::Node fc = node("fc", "Gemm", {"features", "fc_w", "fc_b"}, {"logits"});
    fc.attributes["transB"] = graph::Attribute::make_int(1);
    g.nodes.push_back(fc);
    g.nodes.push_back(node("softmax", "Softmax", {"logits"}, {"prob"}));
    g.outputs = {"prob"};
    std::string bytes;
    onnx_io::export_model(g).SerializeToString(&bytes);
    io::write_file_atomic(out_dir + "/shapes_cnn.onnx", bytes);

    // calibration (100) and evaluation (400) sets, uint8 [1, 3, 32, 32] .npy files
    graph::Executor model{graph::Graph(g)};
    const std::string cal = out_dir + "/calibration";
    fs::create_directories(cal);
    std::mt19937 cal_rng(11);
    for (int i = 0; i < 100; ++i) {
        char name[32];
        std::snprintf(name, sizeof name, "/%03d.npy", i);
        io::write_npy(cal + name, draw(i % kClasses, cal_rng).reshaped({1, 3, kSize, kSize}));
    }
    std::mt19937 eval_rng(99);
    const int n_eval = 400;
    Tensor eval(DType::float32, {n_eval, 3, kSize, kSize});
    std::vector<std::int64_t> labels(n_eval);
    int correct = 0;
    for (int i = 0; i < n_eval; ++i) {
        labels[std::size_t(i)] = i % kClasses;
        const Tensor x = as_float_batch(draw(i % kClasses, eval_rng));
        std::copy(x.data<float>(), x.data<float>() + x.numel(), eval.data<float>() + std::int64_t(i) * x.numel());
        const Tensor p = model.run({x}, ctx)[0];
        int best = 0;
        for (int c = 1; c < kClasses; ++c)
            if (p.data<float>()[c] > p.data<float>()[best]) best = c;
        correct += best == i % kClasses;
    }
    io::write_npy(out_dir + "/eval_images.npy", eval);
    io::write_npy(out_dir + "/eval_labels.npy", Tensor::from_vector<std::int64_t>({n_eval}, labels));
    const std::string yaml =
        "# bpuq_convert config for the example model made by bpuq_make_example\n"
        "model_parameters:\n"
        "  onnx_model: shapes_cnn.onnx\n"
        "  march: bayes-e\n"
        "  output_model_file_prefix: shapes_cnn\n"
        "  working_dir: model_output\n"
        "  debug_mode: dump_calibration_data  # for bpuq_debug (docs/DEBUG.md)\n"
        "input_parameters:\n"
        "  input_name: image\n"
        "  input_shape: 1x3x32x32\n"
        "  input_type_train: rgb\n"
        "  input_layout_train: NCHW\n"
        "  input_type_rt: rgb\n"
        "  norm_type: no_preprocess\n"
        "calibration_parameters:\n"
        "  cal_data_dir: ./calibration\n"
        "  calibration_type: default\n"
        "compiler_parameters:\n"
        "  optimize_level: O3\n";
    io::write_file_atomic(out_dir + "/shapes_cnn.yaml", yaml);
    std::cout << "bpuq_make_example: wrote " << out_dir << "/shapes_cnn.onnx (classes:";
    for (const char* c : kClassNames) std::cout << ' ' << c;
    std::cout << "), 100 calibration samples, " << n_eval << " evaluation samples, shapes_cnn.yaml\n"
              << "float top-1 on the evaluation samples: " << 100.0 * correct / n_eval << "%\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2 || std::string(argv[1]) == "--help") {
        std::cerr << "usage: bpuq_make_example OUTPUT_DIR\n";
        return argc == 2 ? 0 : 2;
    }
    try {
        return run(argv[1]);
    } catch (const bpuq::Error& e) {
        std::cerr << "bpuq_make_example: error: " << e.what() << "\n";
        return 1;
    }
}
