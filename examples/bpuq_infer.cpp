// bpuq_infer: runs an ONNX model (float executor) or a .bpuq integer program (bit-exact
// emulator, SIMD kernels) on .npy inputs.
//
//   bpuq_infer --model M.onnx|M.bpuq --input X.npy [--input Y.npy ...] --output OUT.npy
//              [--output-dir D] [--threads N] [--repeat K] [--optimize]
//
// The first axis of each .npy is the sample axis. When the model's batch dimension is 1 the
// samples are run one by one and the outputs stacked; otherwise the arrays are fed whole.
// --output writes the first graph output; --output-dir writes every output as <name>.npy.
// --repeat K runs every sample K times and prints the median latency per sample.
// A program's image input takes float32 pixels in the training layout or uint8 pixels as the
// device feeds them (input_type_rt / input_layout_rt; NV12 as [N, H*3/2, W]).
#include <bpuq/emul/executor.hpp>
#include <bpuq/emul/program_format.hpp>
#include <bpuq/emul/runtime_input.hpp>
#include <bpuq/io/calibration_data.hpp>
#include <bpuq/io/npy.hpp>
#include <bpuq/onnx.hpp>

#include <fstream>
#include <memory>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace {

void usage() {
    std::cerr << "usage: bpuq_infer --model M.onnx|M.bpuq --input X.npy [--input Y.npy ...] --output OUT.npy\n"
                 "                  [--output-dir D] [--threads N] [--repeat K] [--optimize]\n";
}

std::string file_safe(std::string s) {
    for (char& c : s)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) c = '_';
    return s;
}

/// Sample i (first axis) of t with the first axis kept as 1.
bpuq::Tensor take_sample(const bpuq::Tensor& t, std::int64_t i) {
    bpuq::Shape s = t.shape();
    s[0] = 1;
    bpuq::Tensor r(t.dtype(), s);
    const std::size_t bytes = r.nbytes();
    std::memcpy(r.raw(), static_cast<const std::uint8_t*>(t.raw()) + std::size_t(i) * bytes, bytes);
    return r;
}

/// Stacks per-sample outputs (each with first axis 1, or any shape) along a new/first axis.
bpuq::Tensor stack(const std::vector<bpuq::Tensor>& parts) {
    bpuq::Shape s = parts[0].shape();
    if (!s.empty() && s[0] == 1) s[0] = std::int64_t(parts.size());
    else s.insert(s.begin(), std::int64_t(parts.size()));
    bpuq::Tensor r(parts[0].dtype(), s);
    std::size_t off = 0;
    for (const auto& p : parts) {
        BPUQ_CHECK(p.shape() == parts[0].shape(), "infer.shape", "per-sample outputs differ in shape");
        std::memcpy(static_cast<std::uint8_t*>(r.raw()) + off, p.raw(), p.nbytes());
        off += p.nbytes();
    }
    return r;
}

/// What bpuq_infer needs of a model: input/output names, whether an input has batch 1, run.
struct Runner {
    virtual ~Runner() = default;
    virtual std::vector<std::string> inputs() const = 0;
    virtual std::vector<std::string> outputs() const = 0;
    /// The input's shape when known (empty otherwise).
    virtual bpuq::Shape input_shape(std::size_t k) const = 0;
    /// Every shape a sample of input k may have (a program's image input also takes its runtime form).
    virtual std::vector<bpuq::Shape> sample_shapes(std::size_t k) const { return {input_shape(k)}; }
    virtual std::vector<bpuq::Tensor> run(const std::vector<bpuq::Tensor>& feed) const = 0;
};

struct GraphRunner : Runner {
    GraphRunner(bpuq::graph::Graph g, int threads) : ex(std::move(g)), ctx(threads) {}
    std::vector<std::string> inputs() const override { return ex.graph().inputs; }
    std::vector<std::string> outputs() const override { return ex.graph().outputs; }
    bpuq::Shape input_shape(std::size_t k) const override {
        const bpuq::graph::Value* v = ex.graph().find_value(ex.graph().inputs[k]);
        return v && v->has_shape ? v->shape : bpuq::Shape{};
    }
    std::vector<bpuq::Tensor> run(const std::vector<bpuq::Tensor>& feed) const override { return ex.run(feed, ctx); }
    bpuq::graph::Executor ex;
    bpuq::graph::ExecContext ctx;
};

/// Integer programs take their program inputs' dtype (float32 for the training-space inputs);
/// other numeric .npy dtypes are converted. An image input also takes uint8 pixels in its runtime
/// type and layout (input_type_rt / input_layout_rt, e.g. NV12 as [N, H*3/2, W]).
struct ProgramRunner : Runner {
    ProgramRunner(bpuq::emul::Program p, int threads) : ex(std::move(p), {threads, true}) {
        for (auto id : ex.program().inputs)
            formats.push_back(bpuq::emul::runtime_input_format(ex.program(), ex.program().tensors[std::size_t(id)].name));
    }
    std::vector<std::string> names(const std::vector<std::int32_t>& ids) const {
        std::vector<std::string> n;
        for (auto id : ids) n.push_back(ex.program().tensors[std::size_t(id)].name);
        return n;
    }
    std::vector<std::string> inputs() const override { return names(ex.program().inputs); }
    std::vector<std::string> outputs() const override { return names(ex.program().outputs); }
    bpuq::Shape input_shape(std::size_t k) const override {
        return ex.program().tensors[std::size_t(ex.program().inputs[k])].shape;
    }
    /// The shape of a uint8 runtime sample when it differs from the program input's (NV12, NHWC).
    bpuq::Shape runtime_shape(std::size_t k) const { return bpuq::emul::runtime_input_shape(formats[k], input_shape(k)); }
    std::vector<bpuq::Shape> sample_shapes(std::size_t k) const override { return {input_shape(k), runtime_shape(k)}; }
    std::vector<bpuq::Tensor> run(const std::vector<bpuq::Tensor>& feed) const override {
        std::vector<bpuq::Tensor> in;
        for (std::size_t k = 0; k < feed.size(); ++k) {
            const auto& t = ex.program().tensors[std::size_t(ex.program().inputs[k])];
            if (formats[k].image && feed[k].dtype() == bpuq::DType::uint8 && feed[k].shape() == runtime_shape(k))
                in.push_back(bpuq::emul::runtime_to_program_input(feed[k], formats[k], t.shape, t.name));
            else
                in.push_back(t.dtype == bpuq::DType::float32 ? bpuq::io::to_float32(feed[k]) : feed[k]);
        }
        return ex.run(in);
    }
    bpuq::emul::ProgramExecutor ex;
    std::vector<bpuq::emul::RuntimeInputFormat> formats;
};

std::unique_ptr<Runner> open_model(const std::string& path, bool optimize, int threads) {
    if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".bpuq") == 0) {
        bpuq::emul::Program p = bpuq::emul::load_program_file(path);
        return std::make_unique<ProgramRunner>(std::move(p), threads);
    }
    bpuq::graph::Graph g = bpuq::onnx_io::load_model(path);
    if (optimize) bpuq::graph::optimize(g);
    return std::make_unique<GraphRunner>(std::move(g), threads);
}

}  // namespace

int main(int argc, char** argv) {
    std::string model, output, output_dir;
    std::vector<std::string> inputs;
    int threads = 1, repeat = 0;
    bool optimize = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << "bpuq_infer: " << a << " needs a value\n";
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--model") model = value();
        else if (a == "--input") inputs.push_back(value());
        else if (a == "--output") output = value();
        else if (a == "--output-dir") output_dir = value();
        else if (a == "--threads") threads = std::stoi(value());
        else if (a == "--repeat") repeat = std::stoi(value());
        else if (a == "--optimize") optimize = true;
        else if (a == "--help" || a == "-h") {
            usage();
            return 0;
        } else {
            std::cerr << "bpuq_infer: unknown argument '" << a << "'\n";
            usage();
            return 2;
        }
    }
    if (model.empty() || inputs.empty() || (output.empty() && output_dir.empty()) || threads < 1 || repeat < 0) {
        usage();
        return 2;
    }
    try {
        const std::unique_ptr<Runner> ex = open_model(model, optimize, threads);
        const std::vector<std::string> gi = ex->inputs(), go = ex->outputs();
        BPUQ_CHECK(inputs.size() == gi.size(), "infer.inputs",
                   "model '" + model + "' has " + std::to_string(gi.size()) + " inputs, got " + std::to_string(inputs.size()) +
                       " --input files (one per graph input, in order)");
        std::vector<bpuq::Tensor> arrays;
        for (const auto& p : inputs) arrays.push_back(bpuq::io::read_npy(p));
        // batch-1 models run sample by sample
        bool per_sample = true;
        std::int64_t samples = -1;
        for (std::size_t k = 0; k < gi.size(); ++k) {
            const bpuq::Shape shape = ex->input_shape(k);
            const bool batch1 = !shape.empty() && shape[0] == 1;
            bool rank_fits = false;
            for (const auto& s : ex->sample_shapes(k)) rank_fits = rank_fits || arrays[k].rank() == s.size();
            per_sample = per_sample && batch1 && rank_fits;
            BPUQ_CHECK(arrays[k].rank() >= 1, "infer.inputs", "input '" + inputs[k] + "' is a scalar; need a sample axis");
            BPUQ_CHECK(samples < 0 || samples == arrays[k].dim(0), "infer.inputs",
                       "inputs have different sample counts (first axis)");
            samples = arrays[k].dim(0);
        }
        std::vector<std::vector<bpuq::Tensor>> per_output(go.size());
        std::vector<double> latencies;
        const std::int64_t runs = per_sample ? samples : 1;
        for (std::int64_t s = 0; s < runs; ++s) {
            std::vector<bpuq::Tensor> feed;
            for (const auto& a : arrays) feed.push_back(per_sample ? take_sample(a, s) : a);
            std::vector<bpuq::Tensor> outs = ex->run(feed);
            for (int r = 0; r < repeat; ++r) {
                const auto t0 = std::chrono::steady_clock::now();
                outs = ex->run(feed);
                latencies.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            }
            for (std::size_t o = 0; o < outs.size(); ++o) per_output[o].push_back(outs[o]);
        }
        std::vector<bpuq::Tensor> results;
        for (auto& parts : per_output) results.push_back(per_sample ? stack(parts) : parts[0]);
        if (!output.empty()) bpuq::io::write_npy(output, results[0]);
        if (!output_dir.empty())
            for (std::size_t o = 0; o < results.size(); ++o)
                bpuq::io::write_npy(output_dir + "/" + file_safe(go[o]) + ".npy", results[o]);
        std::cout << "bpuq_infer: " << runs << (per_sample ? " sample(s) one by one" : " batched run") << ", outputs:";
        for (std::size_t o = 0; o < results.size(); ++o)
            std::cout << " " << go[o] << bpuq::shape_to_string(results[o].shape());
        std::cout << "\n";
        if (repeat > 0) {
            std::sort(latencies.begin(), latencies.end());
            const double median = latencies[latencies.size() / 2];
            std::printf("median latency per %s: %.3f ms (min %.3f ms) over %zu runs (%d thread%s)\n", per_sample ? "sample" : "batch",
                        median, latencies.front(), latencies.size(), threads, threads == 1 ? "" : "s");
        }
    } catch (const bpuq::Error& e) {
        std::cerr << "bpuq_infer: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
