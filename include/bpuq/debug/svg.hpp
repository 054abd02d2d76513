// Self-contained SVG charts for the debug report (line charts, histograms, per-channel box plots):
// plain strings, no script, viewable in any browser from disk.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "distribution.hpp"

BPUQ_NAMESPACE_BEGIN
namespace debug {
namespace svg {

inline std::string escape(const std::string& s) {
    std::string o;
    for (char c : s) {
        switch (c) {
            case '&': o += "&amp;"; break;
            case '<': o += "&lt;"; break;
            case '>': o += "&gt;"; break;
            case '"': o += "&quot;"; break;
            default: o += c;
        }
    }
    return o;
}

inline std::string num(double v) {
    char b[32];
    std::snprintf(b, sizeof b, "%.4g", v);
    return b;
}

inline const char* color(std::size_t i) {
    static const char* palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};
    return palette[i % 8];
}

/// The frame every chart shares: size, margins, title, axes with ticks, legend.
class Frame {
public:
    Frame(std::string title, double xmin, double xmax, double ymin, double ymax, int w = 900, int h = 340)
        : w_(w), h_(h), xmin_(xmin), xmax_(xmax > xmin ? xmax : xmin + 1), ymin_(ymin), ymax_(ymax > ymin ? ymax : ymin + 1) {
        out_ << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w_ << "\" height=\"" << h_ << "\" viewBox=\"0 0 " << w_ << ' ' << h_
             << "\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
             << "<text x=\"" << w_ / 2 << "\" y=\"16\" text-anchor=\"middle\" font-size=\"13\">" << escape(title) << "</text>\n";
    }
    double x(double v) const { return L + (v - xmin_) / (xmax_ - xmin_) * (w_ - L - R); }
    double y(double v) const { return h_ - B - (v - ymin_) / (ymax_ - ymin_) * (h_ - T - B); }
    std::ostringstream& body() { return out_; }

    void axes(const std::string& xlabel, const std::string& ylabel, bool numeric_x = true) {
        out_ << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << w_ - L - R << "\" height=\"" << h_ - T - B
             << "\" fill=\"none\" stroke=\"#444\"/>\n";
        for (int i = 0; i <= 4; ++i) {
            const double v = ymin_ + (ymax_ - ymin_) * i / 4.0;
            out_ << "<line x1=\"" << L << "\" x2=\"" << w_ - R << "\" y1=\"" << y(v) << "\" y2=\"" << y(v)
                 << "\" stroke=\"#ddd\"/><text x=\"" << L - 4 << "\" y=\"" << y(v) + 4 << "\" text-anchor=\"end\">" << num(v) << "</text>\n";
            if (numeric_x) {
                const double xv = xmin_ + (xmax_ - xmin_) * i / 4.0;
                out_ << "<text x=\"" << x(xv) << "\" y=\"" << h_ - B + 14 << "\" text-anchor=\"middle\">" << num(xv) << "</text>\n";
            }
        }
        out_ << "<text x=\"" << (L + w_ - R) / 2 << "\" y=\"" << h_ - 6 << "\" text-anchor=\"middle\">" << escape(xlabel) << "</text>\n"
             << "<text transform=\"translate(14," << (T + h_ - B) / 2 << ") rotate(-90)\" text-anchor=\"middle\">" << escape(ylabel)
             << "</text>\n";
    }
    /// Legend in the plot's lower left corner, on a translucent background.
    void legend(const std::vector<std::string>& labels) {
        if (labels.empty()) return;
        std::size_t longest = 0;
        for (const auto& l : labels) longest = std::max(longest, l.size());
        const double bw = 24 + 6.2 * double(longest), bh = 6 + 14 * double(labels.size());
        const double x0 = L + 6, y0 = h_ - B - 6 - bh;
        out_ << "<rect x=\"" << x0 << "\" y=\"" << y0 << "\" width=\"" << bw << "\" height=\"" << bh
             << "\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#ccc\"/>\n";
        for (std::size_t i = 0; i < labels.size(); ++i) {
            const double ly = y0 + 14 + 14 * double(i);
            out_ << "<rect x=\"" << x0 + 6 << "\" y=\"" << ly - 9 << "\" width=\"10\" height=\"10\" fill=\"" << color(i)
                 << "\"/><text x=\"" << x0 + 20 << "\" y=\"" << ly << "\">" << escape(labels[i]) << "</text>\n";
        }
    }
    std::string finish() {
        out_ << "</svg>\n";
        return out_.str();
    }

    static constexpr int L = 64, R = 16, T = 26, B = 40;

private:
    int w_, h_;
    double xmin_, xmax_, ymin_, ymax_;
    std::ostringstream out_;
};

struct Series {
    std::string label;
    std::vector<double> values;
};

/// Line chart over categorical points (node names, topological order); `hline` draws a reference
/// level (e.g. the pick threshold) when finite.
inline std::string line_chart(const std::string& title, const std::vector<std::string>& points, const std::vector<Series>& series,
                              const std::string& ylabel, double hline = NAN) {
    double lo = INFINITY, hi = -INFINITY;
    for (const auto& s : series)
        for (double v : s.values)
            if (std::isfinite(v)) {
                lo = std::min(lo, v);
                hi = std::max(hi, v);
            }
    if (std::isfinite(hline)) {
        lo = std::min(lo, hline);
        hi = std::max(hi, hline);
    }
    if (!std::isfinite(lo)) lo = 0, hi = 1;
    const double pad = (hi - lo) * 0.05 + 1e-12;
    Frame f(title, 0, double(std::max<std::size_t>(points.size(), 2) - 1), lo - pad, hi + pad);
    f.axes("node (topological order)", ylabel, false);
    const std::size_t every = std::max<std::size_t>(1, points.size() / 12);
    for (std::size_t i = 0; i < points.size(); i += every)
        f.body() << "<text x=\"" << f.x(double(i)) << "\" y=\"" << f.y(lo - pad) + 14 << "\" text-anchor=\"middle\" font-size=\"9\">"
                 << escape(points[i].size() > 14 ? points[i].substr(0, 13) + "…" : points[i]) << "</text>\n";
    if (std::isfinite(hline))
        f.body() << "<line x1=\"" << f.x(0) << "\" x2=\"" << f.x(double(points.size() - 1)) << "\" y1=\"" << f.y(hline) << "\" y2=\""
                 << f.y(hline) << "\" stroke=\"#888\" stroke-dasharray=\"4 3\"/>\n";
    std::vector<std::string> labels;
    for (std::size_t k = 0; k < series.size(); ++k) {
        labels.push_back(series[k].label);
        f.body() << "<polyline fill=\"none\" stroke=\"" << color(k) << "\" stroke-width=\"1.5\" points=\"";
        for (std::size_t i = 0; i < series[k].values.size(); ++i)
            if (std::isfinite(series[k].values[i])) f.body() << f.x(double(i)) << ',' << f.y(series[k].values[i]) << ' ';
        f.body() << "\"><title>" << escape(series[k].label) << "</title></polyline>\n";
        for (std::size_t i = 0; i < series[k].values.size(); ++i)
            if (std::isfinite(series[k].values[i]))
                f.body() << "<circle cx=\"" << f.x(double(i)) << "\" cy=\"" << f.y(series[k].values[i]) << "\" r=\"2\" fill=\"" << color(k)
                         << "\"><title>" << escape(i < points.size() ? points[i] : "") << ": " << num(series[k].values[i]) << "</title></circle>\n";
    }
    f.legend(labels);
    return f.finish();
}

/// Histograms sharing an x axis (drawn as steps), log10(1 + count) on y, with vertical markers.
inline std::string histogram_chart(const std::string& title, const std::vector<ValueHistogram>& hs, const std::vector<Marker>& markers) {
    double lo = INFINITY, hi = -INFINITY, top = 1;
    for (const auto& h : hs) {
        lo = std::min(lo, h.lo);
        hi = std::max(hi, h.hi);
        for (double c : h.counts) top = std::max(top, std::log10(1 + c));
    }
    for (const auto& m : markers) {
        lo = std::min(lo, m.x);
        hi = std::max(hi, m.x);
    }
    if (!std::isfinite(lo)) lo = 0, hi = 1;
    Frame f(title, lo, hi, 0, top * 1.05);
    f.axes("value", "log10(1 + count)");
    std::vector<std::string> labels;
    for (std::size_t k = 0; k < hs.size(); ++k) {
        const auto& h = hs[k];
        labels.push_back(h.label);
        const double w = (h.hi - h.lo) / double(std::max<std::size_t>(1, h.counts.size()));
        f.body() << "<polyline fill=\"none\" stroke=\"" << color(k) << "\" stroke-width=\"1.2\" points=\"";
        for (std::size_t i = 0; i < h.counts.size(); ++i) {
            const double yv = f.y(std::log10(1 + h.counts[i]));
            f.body() << f.x(h.lo + w * double(i)) << ',' << yv << ' ' << f.x(h.lo + w * double(i + 1)) << ',' << yv << ' ';
        }
        f.body() << "\"/>\n";
    }
    for (const auto& m : markers)
        f.body() << "<line x1=\"" << f.x(m.x) << "\" x2=\"" << f.x(m.x) << "\" y1=\"" << f.y(0) << "\" y2=\"" << f.y(top * 1.05)
                 << "\" stroke=\"#000\" stroke-dasharray=\"5 3\"><title>" << escape(m.label) << " = " << num(m.x) << "</title></line>\n"
                 << "<text x=\"" << f.x(m.x) + 3 << "\" y=\"" << Frame::T + 12 << "\" font-size=\"10\">" << escape(m.label) << " "
                 << num(m.x) << "</text>\n";
    f.legend(labels);
    return f.finish();
}

/// Per-channel box plot (whiskers = min/max, box = quartiles, tick = median).
inline std::string box_chart(const std::string& title, const std::vector<ChannelBox>& boxes, const std::vector<Marker>& markers) {
    double lo = 0, hi = 0;
    for (const auto& b : boxes) {
        lo = std::min(lo, b.min);
        hi = std::max(hi, b.max);
    }
    for (const auto& m : markers) {
        lo = std::min(lo, m.x);
        hi = std::max(hi, m.x);
    }
    const double pad = (hi - lo) * 0.04 + 1e-12;
    const double n = double(std::max<std::size_t>(boxes.size(), 1));
    Frame f(title, -0.5, n - 0.5, lo - pad, hi + pad);
    f.axes("channel", "value");
    const double bw = std::max(0.5, std::min(10.0, 0.7 * (f.x(1) - f.x(0))));
    for (std::size_t c = 0; c < boxes.size(); ++c) {
        const auto& b = boxes[c];
        const double cx = f.x(double(c));
        f.body() << "<g><title>channel " << c << ": min " << num(b.min) << ", q1 " << num(b.q1) << ", median " << num(b.median) << ", q3 "
                 << num(b.q3) << ", max " << num(b.max) << "</title>"
                 << "<line x1=\"" << cx << "\" x2=\"" << cx << "\" y1=\"" << f.y(b.min) << "\" y2=\"" << f.y(b.max) << "\" stroke=\"#555\"/>"
                 << "<rect x=\"" << cx - bw / 2 << "\" y=\"" << f.y(b.q3) << "\" width=\"" << bw << "\" height=\""
                 << std::max(0.5, f.y(b.q1) - f.y(b.q3)) << "\" fill=\"" << color(0) << "\" fill-opacity=\"0.6\"/>"
                 << "<line x1=\"" << cx - bw / 2 << "\" x2=\"" << cx + bw / 2 << "\" y1=\"" << f.y(b.median) << "\" y2=\"" << f.y(b.median)
                 << "\" stroke=\"#000\"/></g>\n";
    }
    for (const auto& m : markers)
        f.body() << "<line x1=\"" << Frame::L << "\" x2=\"" << f.x(n - 0.5) << "\" y1=\"" << f.y(m.x) << "\" y2=\"" << f.y(m.x)
                 << "\" stroke=\"" << color(1) << "\" stroke-dasharray=\"5 3\"><title>" << escape(m.label) << " = " << num(m.x)
                 << "</title></line>\n";
    return f.finish();
}

}  // namespace svg
}  // namespace debug
BPUQ_NAMESPACE_END
