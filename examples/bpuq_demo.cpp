// bpuq_demo: calibrate and quantize a tensor with the core API and print what happened.
#include <bpuq/core.hpp>
#include <bpuq/quant.hpp>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

int main() {
    // An activation-like tensor: ReLU'd Gaussian with a few large outliers.
    const bpuq::Shape shape{1, 4, 8, 8};
    std::vector<float> values(static_cast<std::size_t>(bpuq::shape_numel(shape)));
    std::mt19937 g(42);
    std::normal_distribution<float> d(0.5f, 1.0f);
    for (auto& v : values) v = std::max(0.0f, d(g));
    values[7] = 12.0f;
    values[100] = 9.5f;
    const bpuq::Tensor x = bpuq::Tensor::from_vector(shape, values);

    // Calibrate: running min/max (the `max` calibration method), per tensor and per channel.
    float lo = values[0], hi = values[0];
    std::vector<float> clo(4, 0.0f), chi(4, 0.0f);
    for (std::size_t i = 0; i < values.size(); ++i) {
        lo = std::min(lo, values[i]);
        hi = std::max(hi, values[i]);
        const std::size_t c = (i / 64) % 4;
        clo[c] = std::min(clo[c], values[i]);
        chi[c] = std::max(chi[c], values[i]);
    }
    const bpuq::QParams per_tensor = bpuq::qparams_from_range(lo, hi, 8, true);
    const bpuq::QParams per_channel = bpuq::qparams_from_ranges(clo, chi, 1, 8, true);

    auto report = [&](const char* name, const bpuq::QParams& p) {
        const bpuq::Tensor q = bpuq::quantize_tensor(x, p);
        const bpuq::Tensor back = bpuq::dequantize_tensor(q, p);
        double dot = 0, nx = 0, ny = 0, max_err = 0;
        for (std::size_t i = 0; i < values.size(); ++i) {
            const double a = values[i], b = back.data<float>()[i];
            dot += a * b;
            nx += a * a;
            ny += b * b;
            max_err = std::max(max_err, std::fabs(a - b));
        }
        std::printf("%-12s scales:", name);
        for (float s : p.scale) std::printf(" %.6f", s);
        std::printf("  cosine %.6f  max |error| %.5f\n", dot / (std::sqrt(nx * ny) + 1e-12), max_err);
    };
    std::printf("bpuq %d.%d.%d demo: int8 symmetric quantization of a %s activation (range [%.3f, %.3f])\n",
                BPUQ_VERSION_MAJOR, BPUQ_VERSION_MINOR, BPUQ_VERSION_PATCH, bpuq::shape_to_string(shape).c_str(), lo, hi);
    report("per-tensor", per_tensor);
    report("per-channel", per_channel);

    // Requantization as the BPU does it: a real multiplier becomes int32 m0 and a shift.
    const double m = per_tensor.scale[0] / per_channel.scale[1];
    const bpuq::QuantizedMultiplier qm = bpuq::quantize_multiplier(m);
    std::printf("rescale multiplier %.9f -> m0=%d shift=%d (represents %.9f); 100 -> %lld\n", m, qm.multiplier,
                qm.shift, bpuq::dequantize_multiplier(qm),
                static_cast<long long>(bpuq::multiply_by_quantized_multiplier(100, qm)));
    return 0;
}
