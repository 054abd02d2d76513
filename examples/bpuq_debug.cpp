// bpuq_debug: the accuracy debug tool (like Horizon's hmct-debugger) on a calibrated model and the
// calibration data that `debug_mode: dump_calibration_data` wrote.
#include <bpuq/debug/report.hpp>
#include <bpuq/onnx/import.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {
const char* kUsage =
    "usage: bpuq_debug <command> <prefix>_calibrated_model.onnx <calibration_data_dir> [options]\n"
    "commands:\n"
    "  sensitivity           one node (or weight, or activation) quantized at a time, the rest float;\n"
    "                        table sorted worst first (node_sensitivity/sensitivity_of_<type>.log)\n"
    "  accumulate-error      error of every node's output as sets of nodes are quantized (accumulate_error/)\n"
    "  distribution          float vs quantized values of nodes, weights, activations (data_distribution/)\n"
    "  channelwise           per-channel box plots of tensors (channelwise_distribution/)\n"
    "  sensitivity-analysis  for nodes below --pick-threshold, the gain from int16 and from float\n"
    "  runall                all of the above, plus index.html\n"
    "options:\n"
    "  --save-dir DIR        output folder (default debug_result)\n"
    "  --metrics LIST        comma list of cosine-similarity (default), mse, mre, sqnr, chebyshev, l1, l2;\n"
    "                        the first ranks\n"
    "  --output-node NAME    tensor whose error is measured (default: every model output, averaged)\n"
    "  --node-type TYPE      node (default), weight or activation (sensitivity)\n"
    "  --data-num N          samples used (default 10; 0 = all in the folder)\n"
    "  --nodes LIST          nodes of interest (sensitivity: rows; distribution/channelwise: what to plot;\n"
    "                        default there: the --top-k most sensitive nodes)\n"
    "  --quantize-nodes LIST      accumulate-error: only these quantized (names, or weight / activation)\n"
    "  --non-quantize-nodes LIST  accumulate-error: everything quantized except these\n"
    "  --no-growing          accumulate-error: skip the growing-prefix curves\n"
    "  --axis N              channelwise: channel axis (default 1)\n"
    "  --pick-threshold X    sensitivity-analysis: cosine below which a node is sensitive (default 0.999)\n"
    "  --top-k N             nodes plotted by default (default 5)\n"
    "  --worst-sample        report the worst sample's metric instead of the mean (average_mode off)\n"
    "  --threads N           worker threads (default: all hardware threads)\n";

int usage(const std::string& why) {
    if (!why.empty()) std::cerr << "bpuq_debug: " << why << "\n";
    std::cerr << kUsage;
    return 2;
}

std::vector<std::string> split(const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string x; std::getline(ss, x, ',');)
        if (!x.empty()) out.push_back(x);
    return out;
}

bool parse_size(const char* s, long lo, long hi, long& out) {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (!s[0] || *end || v < lo || v > hi) return false;
    out = v;
    return true;
}
}  // namespace

int main(int argc, char** argv) {
    using namespace bpuq;
    if (argc >= 2 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help")) {
        std::cout << kUsage;
        return 0;
    }
    if (argc < 4) return usage("a command, a calibrated model and a calibration data folder are required");
    const std::string command = argv[1], model_path = argv[2], data_dir = argv[3];
    const std::vector<std::string> commands = {"sensitivity", "accumulate-error", "distribution", "channelwise", "sensitivity-analysis", "runall"};
    if (std::find(commands.begin(), commands.end(), command) == commands.end())
        return usage("unknown command '" + command + "'; commands: sensitivity, accumulate-error, distribution, channelwise, "
                     "sensitivity-analysis, runall");
    debug::DebugOptions opt;
    opt.data_num = 10;
    std::string save_dir = "debug_result", node_type = "node";
    std::vector<std::string> nodes, quantize_nodes, non_quantize_nodes;
    long axis = 1, top_k = 5;
    double pick = 0.999;
    bool growing = true;
    try {
        for (int i = 4; i < argc; ++i) {
            const std::string a = argv[i];
            auto value = [&]() -> std::string {
                if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
                return argv[++i];
            };
            long n = 0;
            if (a == "--save-dir") save_dir = value();
            else if (a == "--metrics") {
                opt.metrics.clear();
                for (const auto& m : split(value())) opt.metrics.push_back(parse_metric(m));
                if (opt.metrics.empty()) throw std::invalid_argument("--metrics needs at least one metric");
            } else if (a == "--output-node") opt.output_node = value();
            else if (a == "--node-type") node_type = value();
            else if (a == "--data-num") {
                if (!parse_size(value().c_str(), 0, 1 << 24, n)) throw std::invalid_argument("--data-num needs a non-negative integer");
                opt.data_num = std::size_t(n);
            } else if (a == "--nodes") nodes = split(value());
            else if (a == "--quantize-nodes") quantize_nodes = split(value());
            else if (a == "--non-quantize-nodes") non_quantize_nodes = split(value());
            else if (a == "--no-growing") growing = false;
            else if (a == "--axis") {
                if (!parse_size(value().c_str(), 0, 7, axis)) throw std::invalid_argument("--axis needs an integer 0..7");
            } else if (a == "--pick-threshold") {
                const std::string v = value();
                char* end = nullptr;
                pick = std::strtod(v.c_str(), &end);
                if (v.empty() || *end || !(pick > -1.0 && pick <= 1.0)) throw std::invalid_argument("--pick-threshold needs a cosine in (-1, 1]");
            } else if (a == "--top-k") {
                if (!parse_size(value().c_str(), 1, 1000, top_k)) throw std::invalid_argument("--top-k needs an integer 1..1000");
            } else if (a == "--worst-sample") opt.average_mode = false;
            else if (a == "--threads") {
                if (!parse_size(value().c_str(), 1, 1024, n)) throw std::invalid_argument("--threads needs a positive integer");
                opt.threads = int(n);
            } else throw std::invalid_argument("unknown option '" + a + "'");
        }
    } catch (const std::invalid_argument& e) {
        return usage(e.what());
    } catch (const Error& e) {
        return usage(e.what());
    }
    try {
        const auto t0 = std::chrono::steady_clock::now();
        const debug::NodeType type = debug::parse_node_type(node_type);
        const debug::CalibratedModel model(onnx_io::load_model(model_path));
        const io::CalibrationSet data = debug::open_debug_data(data_dir, model.graph());
        debug::DebugSession session(model, data, opt);
        std::cout << "bpuq_debug " << command << ": " << model_path << ", " << session.samples() << " samples, "
                  << model.nodes().size() << " quantized nodes, " << model.calibrations().size() << " Calibration nodes\n";
        debug::ReportWriter report(session, save_dir);
        std::vector<debug::SensitivityRow> rows;
        auto top_nodes = [&]() {
            if (!nodes.empty()) return nodes;
            if (rows.empty()) rows = debug::node_sensitivity(session, debug::NodeType::node);
            std::vector<std::string> t;
            for (std::size_t i = 0; i < rows.size() && t.size() < std::size_t(top_k); ++i) t.push_back(rows[i].name);
            return t;
        };
        // activation Calibration nodes feeding the top nodes (what channelwise plots by default)
        auto top_activations = [&]() {
            if (!nodes.empty()) return nodes;
            std::vector<std::string> t;
            for (const auto& n : top_nodes())
                for (std::size_t c : model.nodes()[std::size_t(model.find_node(n))].calibrations)
                    if (model.calibrations()[c].activation() &&
                        std::find(t.begin(), t.end(), model.calibrations()[c].name) == t.end())
                        t.push_back(model.calibrations()[c].name);
            return t;
        };
        std::vector<debug::QuantizeSet> sets;
        if (!quantize_nodes.empty()) sets.push_back({"quantize: " + quantize_nodes[0] + (quantize_nodes.size() > 1 ? ", ..." : ""), quantize_nodes, false});
        if (!non_quantize_nodes.empty())
            sets.push_back({"all but: " + non_quantize_nodes[0] + (non_quantize_nodes.size() > 1 ? ", ..." : ""), non_quantize_nodes, true});
        if (command == "sensitivity" || command == "runall") {
            const auto r = report.sensitivity(command == "runall" ? debug::NodeType::node : type, command == "runall" ? std::vector<std::string>{} : nodes);
            if (command == "runall" || type == debug::NodeType::node) rows = r;
            if (command == "sensitivity") {
                std::cout << "worst " << std::min<std::size_t>(r.size(), 10) << " of " << r.size() << " (" << metric_name(opt.metrics[0]) << "):\n";
                for (std::size_t i = 0; i < r.size() && i < 10; ++i)
                    std::cout << "  " << r[i].name << " (" << r[i].op_type << ") " << r[i].output.get(opt.metrics[0]) << "\n";
            }
            if (command == "runall") {
                report.sensitivity(debug::NodeType::weight);
                report.sensitivity(debug::NodeType::activation);
            }
        }
        if (command == "accumulate-error" || command == "runall") report.accumulate(sets, growing);
        if (command == "distribution" || command == "runall") {
            std::vector<std::string> names = top_nodes();
            if (nodes.empty())  // the top nodes' own Calibration nodes too
                for (const auto& a : top_activations()) names.push_back(a);
            report.distribution(names);
        }
        if (command == "channelwise" || command == "runall") report.channelwise(top_activations(), int(axis));
        if (command == "sensitivity-analysis" || command == "runall") {
            const auto r = report.analysis(pick, command == "runall" ? std::vector<std::string>{} : nodes, rows.empty() ? nullptr : &rows,
                                           std::size_t(top_k));
            if (command == "sensitivity-analysis")
                for (const auto& x : r)
                    std::cout << "  " << x.name << ": quantized " << x.quantized.cosine << ", int16 " << x.int16.cosine << ", float "
                              << x.float_.cosine << "\n";
        }
        const std::string index = report.finish(std::filesystem::path(model_path).filename().string());
        std::cout << "wrote " << save_dir << " (" << index << ") in "
                  << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s\n";
        return 0;
    } catch (const Error& e) {
        std::cerr << "bpuq_debug: error: " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "bpuq_debug: unexpected error: " << e.what() << "\n";
        return 1;
    }
}
