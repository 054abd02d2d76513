// bpuq_convert: the conversion driver (like `hb_mapper makertbin --config model.yaml`).
#include <bpuq/flow/convert.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "support/yaml_json.hpp"

namespace {
int usage(const char* why) {
    if (why) std::cerr << "bpuq_convert: " << why << "\n";
    std::cerr << "usage: bpuq_convert --config model.yaml [--threads N] [--eval-samples N]\n"
                 "  --config        YAML or JSON config with model_parameters, input_parameters,\n"
                 "                  calibration_parameters, compiler_parameters (docs/CONFIG.md)\n"
                 "  --threads       worker threads (default: all hardware threads)\n"
                 "  --eval-samples  calibration samples used for the node/output tables (default 50, 0 = all)\n";
    return 2;
}
bool parse_int(const char* s, int& out) {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (!s[0] || *end || v < 0 || v > 1 << 20) return false;
    out = static_cast<int>(v);
    return true;
}
}  // namespace

int main(int argc, char** argv) {
    std::string config_path;
    bpuq::flow::ConvertOptions opt;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        if (a == "--config") {
            const char* v = value();
            if (!v) return usage("--config needs a file");
            config_path = v;
        } else if (a == "--threads") {
            const char* v = value();
            if (!v || !parse_int(v, opt.threads) || opt.threads < 1) return usage("--threads needs a positive integer");
        } else if (a == "--eval-samples") {
            const char* v = value();
            int n = 0;
            if (!v || !parse_int(v, n)) return usage("--eval-samples needs a non-negative integer");
            opt.eval_samples = static_cast<std::size_t>(n);
        } else if (a == "-h" || a == "--help") {
            usage(nullptr);
            return 0;
        } else {
            return usage(("unknown argument '" + a + "'").c_str());
        }
    }
    if (config_path.empty()) return usage("--config is required");
    try {
        const nlohmann::json j = bpuq_driver::read_config_file(config_path);
        const std::string base = std::filesystem::absolute(config_path).parent_path().string();
        const bpuq::config::ConvertConfig cfg = bpuq::config::parse_convert_config(j, config_path, base);
        bpuq::flow::convert(cfg, std::cout, opt);
        return 0;
    } catch (const bpuq::Error& e) {
        std::cerr << "\nbpuq_convert: error: " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "\nbpuq_convert: unexpected error: " << e.what() << "\n";
        return 1;
    }
}
