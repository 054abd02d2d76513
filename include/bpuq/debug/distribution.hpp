// Data distributions (SPEC §3 plot_distribution, get_channelwise_data_distribution): value
// histograms of weights (float vs quantized), of activations with their calibrated thresholds, of
// node outputs (float vs quantized) and their error; per-channel box statistics of any tensor.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "../core/tensor.hpp"
#include "session.hpp"

BPUQ_NAMESPACE_BEGIN
namespace debug {

/// Equal-width histogram over [lo, hi].
struct ValueHistogram {
    std::string label;
    double lo = 0, hi = 0;
    std::vector<double> counts;
};

inline ValueHistogram make_histogram(const std::string& label, const std::vector<const Tensor*>& ts, double lo, double hi,
                                     std::size_t bins = 128) {
    ValueHistogram h;
    h.label = label;
    h.lo = lo;
    h.hi = hi > lo ? hi : lo + 1.0;
    h.counts.assign(bins, 0.0);
    const double w = (h.hi - h.lo) / double(bins);
    for (const Tensor* t : ts) {
        const float* p = t->data<float>();
        for (std::int64_t i = 0; i < t->numel(); ++i) {
            const double b = std::floor((double(p[i]) - h.lo) / w);
            h.counts[std::size_t(std::min(std::max(b, 0.0), double(bins - 1)))] += 1.0;
        }
    }
    return h;
}

inline void value_range(const std::vector<const Tensor*>& ts, double& lo, double& hi) {
    lo = 0;
    hi = 0;
    for (const Tensor* t : ts) {
        const float* p = t->data<float>();
        for (std::int64_t i = 0; i < t->numel(); ++i) {
            lo = std::min(lo, double(p[i]));
            hi = std::max(hi, double(p[i]));
        }
    }
}

/// A vertical marker on a histogram (a threshold, a range end).
struct Marker {
    std::string label;
    double x = 0;
};

/// One distribution plot: histograms sharing an x axis, plus markers.
struct DistributionPlot {
    std::string name;   ///< node or Calibration node
    std::string kind;   ///< "weight", "activation", "bias" or "node"
    std::string title;
    std::vector<ValueHistogram> histograms;
    std::vector<Marker> markers;
    std::vector<ValueHistogram> error;  ///< node plots: quantized - float
};

namespace detail {
/// Clipping range [lo, hi] of parameters (per-tensor: channel 0; per-channel: the widest).
inline void clip_range(const QParams& p, double& lo, double& hi) {
    lo = 0;
    hi = 0;
    for (std::size_t c = 0; c < p.scale.size(); ++c) {
        lo = std::min(lo, double(p.scale[c]) * double(p.qmin() - p.zero_point[c]));
        hi = std::max(hi, double(p.scale[c]) * double(p.qmax() - p.zero_point[c]));
    }
}

inline Tensor difference(const Tensor& a, const Tensor& b) {
    Tensor d(DType::float32, a.shape());
    for (std::int64_t i = 0; i < a.numel(); ++i) d.data<float>()[i] = b.data<float>()[i] - a.data<float>()[i];
    return d;
}
}  // namespace detail

/// The distribution plots for `names` (quantized nodes or Calibration nodes).
inline std::vector<DistributionPlot> distributions(const DebugSession& session, const std::vector<std::string>& names,
                                                   std::size_t bins = 128) {
    const CalibratedModel& m = session.model();
    const auto& fl = session.float_runs();
    const auto& qu = session.quantized_runs();
    const CachedRunner& r = session.runner();
    std::vector<DistributionPlot> plots;
    for (const auto& name : names) {
        DistributionPlot p;
        p.name = name;
        const std::int64_t ci = m.find_calibration(name);
        const std::int64_t ni = m.find_node(name);
        BPUQ_CHECK(ci >= 0 || ni >= 0, "debug.node", "'" + name + "' is neither a quantized node nor a Calibration node of the model");
        if (ci >= 0) {
            const CalibrationNode& c = m.calibrations()[std::size_t(ci)];
            double clo = 0, chi = 0;
            detail::clip_range(c.params, clo, chi);
            std::vector<const Tensor*> in, out;
            for (std::size_t s = 0; s < session.samples(); ++s) {
                in.push_back(&fl[s][r.slot(c.input)]);
                out.push_back(&qu[s][r.slot(c.output)]);
                if (!c.activation()) break;  // weights and biases are the same in every sample
            }
            double lo = 0, hi = 0;
            value_range(in, lo, hi);
            if (c.bias) {  // both sets of values on one axis
                double olo = 0, ohi = 0;
                value_range(out, olo, ohi);
                lo = std::min(lo, olo);
                hi = std::max(hi, ohi);
            }
            p.kind = c.bias ? "bias" : c.weight ? "weight" : "activation";
            if (c.bias) {
                p.title = "bias " + c.input + ": float vs corrected values (bias_correction)";
                p.histograms.push_back(make_histogram("float", in, lo, hi, bins));
                p.histograms.push_back(make_histogram("corrected", out, lo, hi, bins));
            } else if (c.weight) {
                p.title = "weight " + c.input + ": float vs quantized values";
                p.histograms.push_back(make_histogram("float", in, lo, hi, bins));
                p.histograms.push_back(make_histogram("quantized", out, lo, hi, bins));
            } else {
                lo = std::min(lo, clo);
                hi = std::max(hi, chi);
                p.title = "activation " + c.input + " (" + std::to_string(c.params.bits) + "-bit): values and clipping range";
                p.histograms.push_back(make_histogram("float", in, lo, hi, bins));
            }
            if (!c.bias) {
                p.markers.push_back({"clip min", clo});
                p.markers.push_back({"clip max", chi});
            }
        } else {
            const QuantizedNode& q = m.nodes()[std::size_t(ni)];
            p.kind = "node";
            p.title = "node " + q.name + " (" + q.op_type + "): float vs quantized output " + q.output;
            std::vector<const Tensor*> f, g;
            std::vector<Tensor> diffs;
            for (std::size_t s = 0; s < session.samples(); ++s) {
                const Tensor& a = fl[s][r.slot(q.output)];
                const Tensor& b = qu[s][r.slot(q.output)];
                if (!comparable(a, b)) continue;
                f.push_back(&a);
                g.push_back(&b);
                diffs.push_back(detail::difference(a, b));
            }
            BPUQ_CHECK(!f.empty(), "debug.node", "node '" + name + "' has no float output to compare");
            double lo = 0, hi = 0, l2 = 0, h2 = 0;
            value_range(f, lo, hi);
            value_range(g, l2, h2);
            lo = std::min(lo, l2);
            hi = std::max(hi, h2);
            p.histograms.push_back(make_histogram("float", f, lo, hi, bins));
            p.histograms.push_back(make_histogram("quantized", g, lo, hi, bins));
            std::vector<const Tensor*> dp;
            for (const auto& d : diffs) dp.push_back(&d);
            double dlo = 0, dhi = 0;
            value_range(dp, dlo, dhi);
            const double a = std::max(std::fabs(dlo), std::fabs(dhi));
            p.error.push_back(make_histogram("quantized - float", dp, -a, a, bins));
        }
        plots.push_back(std::move(p));
    }
    return plots;
}

/// Box statistics of one channel.
struct ChannelBox {
    double min = 0, q1 = 0, median = 0, q3 = 0, max = 0;
};

struct ChannelwiseDistribution {
    std::string name;    ///< the node or Calibration node asked for
    std::string tensor;  ///< the tensor measured
    int axis = 1;
    std::vector<ChannelBox> channels;
    std::vector<Marker> markers;  ///< the per-tensor clipping range, when the tensor is calibrated
};

/// Per-channel box statistics (float run) of a node's output or a Calibration node's input, along
/// `axis`. At most `max_values` values per channel are kept (evenly strided) for the quantiles.
inline ChannelwiseDistribution channelwise_distribution(const DebugSession& session, const std::string& name, int axis = 1,
                                                        std::size_t max_values = 20000) {
    const CalibratedModel& m = session.model();
    const std::int64_t ci = m.find_calibration(name);
    const std::int64_t ni = m.find_node(name);
    BPUQ_CHECK(ci >= 0 || ni >= 0, "debug.node", "'" + name + "' is neither a quantized node nor a Calibration node of the model");
    ChannelwiseDistribution d;
    d.name = name;
    d.axis = axis;
    d.tensor = ci >= 0 ? m.calibrations()[std::size_t(ci)].input : m.nodes()[std::size_t(ni)].output;
    if (ci >= 0 && !m.calibrations()[std::size_t(ci)].bias) {
        double lo = 0, hi = 0;
        detail::clip_range(m.calibrations()[std::size_t(ci)].params, lo, hi);
        d.markers = {{"clip min", lo}, {"clip max", hi}};
    }
    const std::size_t slot = session.runner().slot(d.tensor);
    const auto& fl = session.float_runs();
    const Tensor& first = fl[0][slot];
    BPUQ_CHECK(first.dtype() == DType::float32, "debug.tensor", "tensor '" + d.tensor + "' is not float32");
    const int rank = int(first.rank());
    BPUQ_CHECK(axis >= 0 && axis < rank, "debug.axis",
               "axis " + std::to_string(axis) + " is out of range for tensor '" + d.tensor + "' of shape " + shape_to_string(first.shape()));
    const std::size_t C = std::size_t(first.dim(std::size_t(axis)));
    std::size_t inner = 1, outer = 1;
    for (int i = axis + 1; i < rank; ++i) inner *= std::size_t(first.dim(std::size_t(i)));
    for (int i = 0; i < axis; ++i) outer *= std::size_t(first.dim(std::size_t(i)));
    const std::size_t samples = first.dtype() == DType::float32 && ci >= 0 && m.calibrations()[std::size_t(ci)].weight ? 1 : session.samples();
    const std::size_t per_channel = outer * inner * samples;
    const std::size_t stride = std::max<std::size_t>(1, (per_channel + max_values - 1) / max_values);
    std::vector<std::vector<float>> vals(C);
    for (std::size_t c = 0; c < C; ++c) {
        std::size_t k = 0;
        for (std::size_t s = 0; s < samples; ++s) {
            const float* p = fl[s][slot].data<float>();
            for (std::size_t o = 0; o < outer; ++o)
                for (std::size_t i = 0; i < inner; ++i, ++k)
                    if (k % stride == 0) vals[c].push_back(p[(o * C + c) * inner + i]);
        }
    }
    for (auto& v : vals) {
        ChannelBox b;
        if (!v.empty()) {
            std::sort(v.begin(), v.end());
            auto q = [&](double f) { return double(v[std::size_t(std::lround(f * double(v.size() - 1)))]); };
            b = {v.front(), q(0.25), q(0.5), q(0.75), v.back()};
        }
        d.channels.push_back(b);
    }
    return d;
}

}  // namespace debug
BPUQ_NAMESPACE_END
