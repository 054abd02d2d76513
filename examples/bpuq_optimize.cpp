// bpuq_optimize: the accuracy optimizer — finds the cheapest bpuq_convert config that reaches an
// output-cosine or top-1 target and writes it as a ready-to-use YAML config (docs/OPTIMIZE.md).
#include <bpuq/flow/optimize.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "support/yaml_json.hpp"

namespace {
const char* kUsage =
    "usage: bpuq_optimize --config model.yaml (--target-cosine X | --eval-data DIR --eval-labels L.npy --max-top1-loss P)\n"
    "                     [--output optimized.yaml] [--work-dir DIR] [--threads N] [--eval-samples N]\n"
    "                     [--max-int16 N] [--max-int16-tries N] [--max-cpu N] [--sensitivity-samples N]\n"
    "  --config               the bpuq_convert config to start from (YAML or JSON)\n"
    "  --target-cosine X      reach this mean output cosine (integer program vs float, calibration samples)\n"
    "  --eval-data DIR        labelled samples: a folder of .npy model inputs (as a cal_data_dir)\n"
    "  --eval-labels L.npy    integer labels as output indices, one per sample (file order)\n"
    "  --max-top1-loss P      allowed top-1 loss against the float model, in points\n"
    "  --output FILE          the chosen config (default <config>_optimized.yaml beside the config)\n"
    "  --work-dir DIR         trials convert into DIR/trial_<k> (default optimize_work)\n"
    "  --threads N            worker threads (default: all)\n"
    "  --eval-samples N       calibration samples in each trial's output cosine (default 50)\n"
    "  --max-int16 N          int16 nodes at most (default 24)\n"
    "  --max-int16-tries N    prefixes of the int16 plan converted at most (default 8)\n"
    "  --max-cpu N            tail nodes moved to the CPU at most (default 2)\n"
    "  --sensitivity-samples N samples the int16 plan is estimated on (default: --eval-samples)\n";

int usage(const std::string& why) {
    if (!why.empty()) std::cerr << "bpuq_optimize: " << why << "\n";
    std::cerr << kUsage;
    return 2;
}

bool parse_count(const std::string& s, std::size_t& out) {
    char* end = nullptr;
    const long v = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end || v < 0 || v > (1L << 24)) return false;
    out = std::size_t(v);
    return true;
}
bool parse_real(const std::string& s, double& out) {
    char* end = nullptr;
    out = std::strtod(s.c_str(), &end);
    return !s.empty() && !*end && std::isfinite(out);
}
}  // namespace

int main(int argc, char** argv) {
    namespace fs = std::filesystem;
    std::string config_path, output;
    bpuq::flow::OptimizeTarget target;
    bpuq::flow::OptimizeOptions opt;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "-h" || a == "--help") {
            std::cout << kUsage;
            return 0;
        }
        if (i + 1 >= argc) return usage(a.rfind("--", 0) == 0 ? a + " needs a value" : "unknown argument '" + a + "'");
        const std::string v = argv[++i];
        std::size_t n = 0;
        if (a == "--config") config_path = v;
        else if (a == "--output") output = v;
        else if (a == "--work-dir") opt.work_dir = v;
        else if (a == "--eval-data") target.eval_dir = v;
        else if (a == "--eval-labels") target.eval_labels = v;
        else if (a == "--target-cosine") {
            if (!parse_real(v, target.cosine) || target.cosine <= 0 || target.cosine > 1) return usage("--target-cosine needs a number in (0, 1]");
        } else if (a == "--max-top1-loss") {
            if (!parse_real(v, target.max_top1_loss) || target.max_top1_loss < 0) return usage("--max-top1-loss needs points >= 0");
        } else if (a == "--threads") {
            if (!parse_count(v, n) || n == 0) return usage("--threads needs a positive integer");
            opt.threads = int(n);
        } else if (a == "--eval-samples") {
            if (!parse_count(v, opt.eval_samples)) return usage("--eval-samples needs a non-negative integer");
        } else if (a == "--max-int16") {
            if (!parse_count(v, opt.max_int16)) return usage("--max-int16 needs a non-negative integer");
        } else if (a == "--max-int16-tries") {
            if (!parse_count(v, opt.max_int16_tries)) return usage("--max-int16-tries needs a non-negative integer");
        } else if (a == "--max-cpu") {
            if (!parse_count(v, opt.max_cpu)) return usage("--max-cpu needs a non-negative integer");
        } else if (a == "--sensitivity-samples") {
            if (!parse_count(v, opt.sensitivity_samples) || opt.sensitivity_samples == 0)
                return usage("--sensitivity-samples needs a positive integer");
        } else
            return usage("unknown argument '" + a + "'");
    }
    if (config_path.empty()) return usage("--config is required");
    if (target.cosine <= 0 && target.eval_dir.empty()) return usage("give --target-cosine, or --eval-data with --eval-labels and --max-top1-loss");
    if (target.cosine > 0 && !target.eval_dir.empty()) return usage("give one target: --target-cosine or the labelled set, not both");
    if (!target.eval_dir.empty() && target.eval_labels.empty()) return usage("--eval-data needs --eval-labels");
    if (output.empty()) {
        const fs::path p(config_path);
        output = (p.parent_path() / (p.stem().string() + "_optimized.yaml")).string();
    }
    try {
        const nlohmann::json j = bpuq_driver::read_config_file(config_path);
        const std::string base = fs::absolute(config_path).parent_path().string();
        const bpuq::flow::OptimizeResult r = bpuq::flow::optimize(j, config_path, base, target, opt, std::cout);
        nlohmann::json best = r.trials[r.best].config;
        if (best["model_parameters"].contains("node_info") && best["model_parameters"]["node_info"].empty())
            best["model_parameters"].erase("node_info");
        std::string yaml = "# written by bpuq_optimize from " + config_path + ": " + r.trials[r.best].change + "\n" +
                           "# " + (r.reached ? "reaches" : "does NOT reach") + " the target; see " +
                           (fs::path(opt.work_dir) / "optimize_report.json").string() + "\n";
        yaml += bpuq_driver::json_to_yaml(best);
        bpuq::io::write_file_atomic(output, yaml);
        bpuq::io::write_file_atomic((fs::path(opt.work_dir) / "optimize_report.json").string(), r.report().dump(2));
        std::cout << "wrote " << output << " and " << (fs::path(opt.work_dir) / "optimize_report.json").string() << "\n";
        return r.reached ? 0 : 3;
    } catch (const bpuq::Error& e) {
        std::cerr << "bpuq_optimize: error: " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "bpuq_optimize: unexpected error: " << e.what() << "\n";
        return 1;
    }
}
