// bpuq_accuracy: top-1 of float ONNX models and integer programs on the shared datasets' splits,
// side by side on the same preprocessed samples; also writes calibration folders for a recipe.
#include <bpuq/emul/executor.hpp>
#include <bpuq/emul/program_format.hpp>
#include <bpuq/emul/runtime_input.hpp>
#include <bpuq/flow/colour_conversion.hpp>
#include <bpuq/graph/executor.hpp>
#include <bpuq/io/npy.hpp>
#include <bpuq/onnx/import.hpp>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>

#include "support/datasets.hpp"

namespace {

using namespace bpuq;

int usage(const std::string& why) {
    if (!why.empty()) std::cerr << "bpuq_accuracy: " << why << "\n";
    std::cerr << "usage: bpuq_accuracy --recipe resnet8|mobilenet_v1|mobilenet_v2|squeezenet|mnist\n"
                 "         [--data DIR] [--split evaluation|calibration] [--limit N] [--threads N]\n"
                 "         [--onnx MODEL.onnx]...        float model taking raw pixels (e.g. *_original_float_model.onnx)\n"
                 "         [--onnx-source MODEL.onnx]... float model taking normalized input (the recipe's mean/scale applied)\n"
                 "         [--program MODEL.bpuq]...     integer program (raw pixels in; converted to its\n"
                 "                                       input_type_rt, e.g. NV12, when that differs)\n"
                 "         [--json OUT.json]\n"
                 "       bpuq_accuracy --recipe NAME --write-calibration DIR [--split calibration] [--limit N]\n"
                 "                     [--write-labels L.npy]   the samples' classes as output indices (int64)\n";
    return 2;
}

struct Model {
    std::string label;
    std::unique_ptr<graph::Executor> graph;
    std::unique_ptr<emul::ProgramExecutor> program;
    bool normalize = false;
    config::InputSpec colour;  ///< a program's runtime colour type (the recipe's pixels are the training type)
    std::atomic<int> correct{0};
};

int argmax(const Tensor& t) {
    const float* p = t.data<float>();
    int best = 0;
    for (std::int64_t i = 1; i < t.numel(); ++i)
        if (p[i] > p[best]) best = int(i);
    return best;
}

}  // namespace

int main(int argc, char** argv) {
    std::string recipe_name, data_dir = "../shared/data", split = "evaluation", write_cal, write_labels, json_out;
    std::size_t limit = 0;
    int threads = std::max(1, int(std::thread::hardware_concurrency()));
    std::vector<std::pair<std::string, std::string>> models;  // kind, path
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
        auto need = [&]() -> std::string {
            if (!v) throw std::runtime_error(a + " needs a value");
            ++i;
            return v;
        };
        try {
            if (a == "--recipe") recipe_name = need();
            else if (a == "--data") data_dir = need();
            else if (a == "--split") split = need();
            else if (a == "--limit") limit = std::stoul(need());
            else if (a == "--threads") threads = std::max(1, std::stoi(need()));
            else if (a == "--onnx" || a == "--onnx-source" || a == "--program") models.push_back({a, need()});
            else if (a == "--write-calibration") write_cal = need();
            else if (a == "--write-labels") write_labels = need();
            else if (a == "--json") json_out = need();
            else if (a == "-h" || a == "--help") return usage(""), 0;
            else return usage("unknown argument '" + a + "'");
        } catch (const std::exception& e) {
            return usage(e.what());
        }
    }
    if (const char* env = std::getenv("BPUQ_DATA_DIR")) data_dir = env;
    if (recipe_name.empty()) return usage("--recipe is required");
    try {
        const auto recipe = bpuq_driver::recipe_by_name(recipe_name);
        auto samples = bpuq_driver::list_split(recipe, data_dir, split);
        if (limit && limit < samples.size()) samples.resize(limit);
        const bpuq_driver::SampleLoader loader(recipe, data_dir);
        if (!write_cal.empty()) {  // uint8 [1, C, H, W] .npy files: a cal_data_dir for bpuq_convert
            std::filesystem::create_directories(write_cal);
            for (std::size_t i = 0; i < samples.size(); ++i) {
                const io::Image im = loader.image(samples[i]);
                Tensor t(DType::uint8, {1, im.channels, im.height, im.width});
                const std::size_t plane = std::size_t(im.width) * std::size_t(im.height);
                for (int c = 0; c < im.channels; ++c)
                    for (std::size_t p = 0; p < plane; ++p) t.data<std::uint8_t>()[c * plane + p] = im.pixels[p * std::size_t(im.channels) + std::size_t(c)];
                char name[32];
                std::snprintf(name, sizeof name, "/%05zu.npy", i);
                io::write_npy(write_cal + name, t);
            }
            std::cout << "wrote " << samples.size() << " " << split << " samples of " << recipe_name << " to " << write_cal << "\n";
            if (!write_labels.empty()) {  // output indices (label + the recipe's offset), for bpuq_optimize --eval-labels
                std::vector<std::int64_t> idx;
                for (const auto& smp : samples) idx.push_back(smp.label + recipe.label_offset);
                io::write_npy(write_labels, Tensor::from_vector<std::int64_t>({std::int64_t(idx.size())}, idx));
                std::cout << "wrote " << idx.size() << " labels to " << write_labels << "\n";
            }
            return 0;
        }
        if (models.empty()) return usage("give at least one --onnx, --onnx-source or --program");
        std::vector<std::unique_ptr<Model>> ms;
        for (const auto& kv : models) {
            auto m = std::make_unique<Model>();
            m->label = kv.second;
            if (kv.first == "--program") {
                emul::Program p = emul::load_program_file(kv.second);
                const emul::RuntimeInputFormat rf = emul::runtime_input_format(p, p.tensors[std::size_t(p.inputs.at(0))].name);
                if (rf.image) {
                    m->colour.type_train = rf.type_train;
                    m->colour.type_rt = rf.type_rt;
                    m->colour.layout_train = rf.layout_train;
                    m->colour.space_and_range = rf.space_and_range;
                }
                m->program = std::make_unique<emul::ProgramExecutor>(std::move(p));
            } else {
                m->graph = std::make_unique<graph::Executor>(onnx_io::load_model(kv.second));
                m->normalize = kv.first == "--onnx-source";
            }
            ms.push_back(std::move(m));
        }
        std::atomic<std::size_t> next{0}, done{0};
        std::vector<std::string> errors(static_cast<std::size_t>(threads));
        auto worker = [&](int w) {
            graph::ExecContext ctx(1);
            try {
                for (std::size_t s; (s = next++) < samples.size();) {
                    const Tensor raw = loader.tensor(samples[s]);
                    for (auto& m : ms) {
                        Tensor in = raw;
                        if (m->normalize) {
                            in = raw.clone();
                            const std::int64_t plane = in.numel() / in.dim(1);
                            for (std::int64_t c = 0; c < in.dim(1); ++c) {
                                const float mean = recipe.mean.empty() ? 0.0f : recipe.mean[recipe.mean.size() == 1 ? 0 : std::size_t(c)];
                                const float sc = recipe.scale.empty() ? 1.0f : recipe.scale[recipe.scale.size() == 1 ? 0 : std::size_t(c)];
                                for (std::int64_t p = 0; p < plane; ++p) in.data<float>()[c * plane + p] = (in.data<float>()[c * plane + p] - mean) * sc;
                            }
                        }
                        // an NV12/YUV program sees the picture as the device would deliver it
                        if (m->program) in = flow::calibration_sample_to_model_input(in, m->colour);
                        const Tensor y = m->graph ? m->graph->run({in}, ctx)[0] : m->program->run({in})[0];
                        if (argmax(y) == samples[s].label + recipe.label_offset) ++m->correct;
                    }
                    const std::size_t d = ++done;
                    if (w == 0 && (d % 100 == 0 || d == samples.size()))
                        std::cerr << "\r" << d << "/" << samples.size() << std::flush;
                }
            } catch (const std::exception& e) {
                errors[std::size_t(w)] = e.what();
                next = samples.size();
            }
        };
        std::vector<std::thread> pool;
        for (int w = 1; w < threads; ++w) pool.emplace_back(worker, w);
        worker(0);
        for (auto& t : pool) t.join();
        std::cerr << "\n";
        for (const auto& e : errors)
            if (!e.empty()) throw std::runtime_error(e);
        std::string json = "{\"recipe\": \"" + recipe_name + "\", \"split\": \"" + split + "\", \"samples\": " + std::to_string(samples.size()) + ", \"top1\": {";
        for (std::size_t k = 0; k < ms.size(); ++k) {
            const double top1 = 100.0 * ms[k]->correct / double(samples.size());
            std::printf("top-1 %7.3f%%  (%d / %zu)  %s\n", top1, ms[k]->correct.load(), samples.size(), ms[k]->label.c_str());
            json += (k ? ", " : "") + std::string("\"") + ms[k]->label + "\": " + std::to_string(top1);
        }
        json += "}}\n";
        if (!json_out.empty()) std::ofstream(json_out) << json;
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "bpuq_accuracy: error: " << e.what() << "\n";
        return 1;
    }
}
