// The debug report (SPEC §3 runall): each analysis writes its folder under save_dir (text tables,
// JSON, SVG plots, all written atomically) and a section of index.html, a single page that shows
// every table and plot from disk without a server.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "../io/atomic_file.hpp"
#include "accumulate.hpp"
#include "distribution.hpp"
#include "sensitivity.hpp"
#include "svg.hpp"

BPUQ_NAMESPACE_BEGIN
namespace debug {

inline nlohmann::json stats_json(const ErrorStats& s) {
    return {{"cosine-similarity", s.cosine}, {"mse", s.mse}, {"mre", s.mre}, {"sqnr", s.sqnr_db},
            {"chebyshev", s.chebyshev},     {"l1", s.l1},   {"l2", s.l2}};
}

namespace detail {
inline std::string pad(const std::string& s, std::size_t w) { return s.size() >= w ? s + " " : s + std::string(w - s.size(), ' '); }
inline std::string fmt(double v) {
    std::ostringstream o;
    if (std::fabs(v) >= 1e-3 || v == 0) o << std::fixed << std::setprecision(6) << v;
    else o << std::scientific << std::setprecision(4) << v;
    return o.str();
}
inline std::string file_safe(const std::string& s) {
    std::string o;
    for (char c : s) o += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
    if (o.size() > 80) {  // ONNX names can exceed a file name's 255 bytes: keep a prefix and a hash
        std::uint64_t h = 1469598103934665603ull;  // FNV-1a
        for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
        char hex[17];
        std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
        o = o.substr(0, 60) + "_" + hex;
    }
    return o.empty() ? "unnamed" : o;
}
inline std::string html_table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
    std::ostringstream o;
    o << "<table><tr>";
    for (const auto& h : head) o << "<th>" << svg::escape(h) << "</th>";
    o << "</tr>\n";
    for (const auto& r : rows) {
        o << "<tr>";
        for (const auto& c : r) o << "<td>" << svg::escape(c) << "</td>";
        o << "</tr>\n";
    }
    o << "</table>\n";
    return o.str();
}
inline std::string text_table(const std::vector<std::string>& head, const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::size_t> w(head.size());
    for (std::size_t i = 0; i < head.size(); ++i) w[i] = head[i].size() + 2;
    for (const auto& r : rows)
        for (std::size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], r[i].size() + 2);
    std::ostringstream o;
    for (std::size_t i = 0; i < head.size(); ++i) o << pad(head[i], w[i]);
    o << '\n';
    for (const auto& r : rows) {
        for (std::size_t i = 0; i < r.size(); ++i) o << pad(r[i], w[i]);
        o << '\n';
    }
    return o.str();
}
}  // namespace detail

/// Writes the analyses into `save_dir` and collects index.html. Each method can be called alone
/// (the bpuq_debug commands) or all in turn (runall).
class ReportWriter {
public:
    ReportWriter(const DebugSession& session, std::string save_dir) : session_(session), dir_(std::move(save_dir)) {
        summary_["samples"] = session.samples();
        summary_["compared_outputs"] = session.compared_names();
        summary_["metrics"] = nlohmann::json::array();
        for (Metric m : session.options().metrics) summary_["metrics"].push_back(metric_name(m));
        summary_["average_mode"] = session.options().average_mode;
    }

    const nlohmann::json& summary() const { return summary_; }

    /// node_sensitivity/: sensitivity_of_<type>.log/.json; for node_type node also the single vs
    /// entire error per node (both views) and its plot. Returns the rows (worst first).
    std::vector<SensitivityRow> sensitivity(NodeType type, const std::vector<std::string>& interested = {}) {
        const auto rows = node_sensitivity(session_, type, interested);
        const auto& metrics = session_.options().metrics;
        std::vector<std::string> head = {"node", "type"};
        for (Metric m : metrics) head.push_back(metric_name(m));
        std::vector<std::vector<std::string>> table;
        nlohmann::json js = nlohmann::json::array();
        for (const auto& r : rows) {
            std::vector<std::string> line = {r.name, r.op_type};
            for (Metric m : metrics) line.push_back(detail::fmt(r.output.get(m)));
            table.push_back(line);
            nlohmann::json j = {{"node", r.name}, {"type", r.op_type}, {"output", stats_json(r.output)}};
            if (type == NodeType::node) j["single"] = stats_json(r.single);
            js.push_back(j);
        }
        const std::string sub = "node_sensitivity", base = "sensitivity_of_" + std::string(node_type_name(type));
        write(sub + "/" + base + ".log",
              "# " + std::string(node_type_name(type)) + " sensitivity: one " + node_type_name(type) +
                  " quantized at a time, the rest float; compared output(s): " + join(session_.compared_names()) + "; " +
                  std::to_string(session_.samples()) + " samples; worst first\n" + detail::text_table(head, table));
        write(sub + "/" + base + ".json", js.dump(1));
        summary_["sensitivity"][node_type_name(type)] = js;
        std::string html = "<h2>Node sensitivity (" + std::string(node_type_name(type)) +
                           ")</h2>\n<p>Each row: only this " + node_type_name(type) +
                           " quantized, everything else float; error of the model output(s) " + svg::escape(join(session_.compared_names())) +
                           ", worst first. <a href=\"" + sub + "/" + base + ".log\">table</a> · <a href=\"" + sub + "/" + base +
                           ".json\">json</a></p>\n";
        html += detail::html_table(head, std::vector<std::vector<std::string>>(table.begin(), table.begin() + std::ptrdiff_t(std::min<std::size_t>(table.size(), 30))));
        if (table.size() > 30) html += "<p>(" + std::to_string(table.size() - 30) + " more rows in the table file)</p>\n";
        if (type == NodeType::node) html += views(rows);
        sections_.push_back(html);
        return rows;
    }

    /// accumulate_error/: node error curves for the quantize sets (default: everything, weights
    /// only, activations only) and the growing-prefix curves.
    void accumulate(std::vector<QuantizeSet> sets = {}, bool growing = true) {
        if (sets.empty())
            sets = {{"all quantized", {"weight", "activation"}, false}, {"weights only", {"weight"}, false}, {"activations only", {"activation"}, false}};
        const Metric m = session_.options().metrics[0];
        const auto curves = node_error_curves(session_, sets);
        std::vector<svg::Series> series;
        nlohmann::json js;
        for (const auto& c : curves) {
            svg::Series s{c.label, {}};
            nlohmann::json pts = nlohmann::json::array();
            for (std::size_t i = 0; i < c.values.size(); ++i) {
                s.values.push_back(c.values[i].get(m));
                pts.push_back({{"node", c.points[i]}, {"error", stats_json(c.values[i])}});
            }
            series.push_back(s);
            js["node_error"][c.label] = pts;
        }
        std::string html = "<h2>Accumulated error</h2>\n<p>" + std::string(metric_name(m)) +
                           " of every quantized node's output against the float model, in topological order, when only the named set "
                           "is quantized.</p>\n";
        const std::string chart = svg::line_chart("accumulated error per node (" + std::string(metric_name(m)) + ")",
                                                  curves.empty() ? std::vector<std::string>{} : curves[0].points, series, metric_name(m));
        write("accumulate_error/accumulate_error.svg", chart);
        html += chart;
        if (growing) {
            std::vector<svg::Series> gs;
            std::vector<std::string> pts;
            for (bool keep_float : {false, true}) {
                const ErrorCurve c = growing_prefix_curve(session_, keep_float);
                svg::Series s{c.label, {}};
                nlohmann::json arr = nlohmann::json::array();
                for (std::size_t i = 0; i < c.values.size(); ++i) {
                    s.values.push_back(c.values[i].get(m));
                    arr.push_back({{"node", c.points[i]}, {"error", stats_json(c.values[i])}});
                }
                gs.push_back(s);
                pts = c.points;
                js["growing"][c.label] = arr;
            }
            const std::string g = svg::line_chart("output " + std::string(metric_name(m)) + " as nodes are quantized in topological order", pts,
                                                  gs, metric_name(m));
            write("accumulate_error/growing_sets.svg", g);
            html += "<p>Output error when the first k nodes are quantized (rest float), and when the first k are float (rest "
                    "quantized): where a curve jumps, the node at that point costs accuracy.</p>\n" + g;
        }
        write("accumulate_error/accumulate_error.json", js.dump(1));
        summary_["accumulate_error"] = js;
        sections_.push_back(html);
    }

    /// data_distribution/: one plot per name (node: float vs quantized output and error;
    /// Calibration node: values with the clipping range).
    void distribution(const std::vector<std::string>& names) {
        std::string html = "<h2>Data distribution</h2>\n";
        nlohmann::json js = nlohmann::json::array();
        for (const auto& p : distributions(session_, names)) {
            const std::string file = "data_distribution/" + detail::file_safe(p.name) + ".svg";
            std::string chart = svg::histogram_chart(p.title, p.histograms, p.markers);
            if (!p.error.empty()) chart += svg::histogram_chart("error: " + p.title, p.error, {});
            write(file, chart);
            html += "<h3>" + svg::escape(p.name) + " (" + p.kind + ")</h3>\n" + chart;
            js.push_back({{"name", p.name}, {"kind", p.kind}, {"plot", file}});
        }
        summary_["data_distribution"] = js;
        sections_.push_back(html);
    }

    /// channelwise_distribution/: per-channel box plots of the named tensors along `axis`.
    void channelwise(const std::vector<std::string>& names, int axis = 1) {
        std::string html = "<h2>Channel-wise distribution</h2>\n<p>Per-channel min / quartiles / max (float model, axis " +
                           std::to_string(axis) + "); dashed lines: the per-tensor clipping range. A few channels far wider than the "
                           "rest argue for per-channel quantization or int16.</p>\n";
        nlohmann::json js = nlohmann::json::array();
        for (const auto& name : names) {
            const ChannelwiseDistribution d = channelwise_distribution(session_, name, axis);
            const std::string file = "channelwise_distribution/" + detail::file_safe(name) + ".svg";
            const std::string chart = svg::box_chart(name + ": " + d.tensor + " per channel", d.channels, d.markers);
            write(file, chart);
            html += chart;
            nlohmann::json ch = nlohmann::json::array();
            for (const auto& b : d.channels) ch.push_back({b.min, b.q1, b.median, b.q3, b.max});
            js.push_back({{"name", name}, {"tensor", d.tensor}, {"axis", axis}, {"plot", file}, {"channels_min_q1_median_q3_max", ch}});
        }
        write("channelwise_distribution/channelwise.json", js.dump(1));
        summary_["channelwise_distribution"] = js;
        sections_.push_back(html);
    }

    /// sensitivity_analysis/: for the nodes under pick_threshold, the output error with each one
    /// raised to int16 and left float, everything else quantized.
    /// When no node is below the threshold, the `fallback_top_k` most sensitive ones are analysed.
    std::vector<SensitivityAnalysisRow> analysis(double pick_threshold = 0.999, const std::vector<std::string>& nodes = {},
                                                 const std::vector<SensitivityRow>* node_rows = nullptr, std::size_t fallback_top_k = 5) {
        const auto rows = sensitivity_analysis(session_, pick_threshold, nodes, node_rows, fallback_top_k);
        const bool fallback = nodes.empty() && !rows.empty() && rows.front().sensitivity >= pick_threshold;
        const Metric m = session_.options().metrics[0];
        const std::vector<std::string> head = {"node", "type", "sensitivity (cosine)", std::string("quantized ") + metric_name(m),
                                               std::string("int16 ") + metric_name(m), std::string("float ") + metric_name(m),
                                               "gain int16", "gain float"};
        std::vector<std::vector<std::string>> table;
        nlohmann::json js = nlohmann::json::array();
        const double sign = metric_higher_is_better(m) ? 1.0 : -1.0;
        for (const auto& r : rows) {
            table.push_back({r.name, r.op_type, detail::fmt(r.sensitivity), detail::fmt(r.quantized.get(m)), detail::fmt(r.int16.get(m)),
                             detail::fmt(r.float_.get(m)), detail::fmt(sign * (r.int16.get(m) - r.quantized.get(m))),
                             detail::fmt(sign * (r.float_.get(m) - r.quantized.get(m)))});
            js.push_back({{"node", r.name}, {"type", r.op_type}, {"sensitivity_cosine", r.sensitivity}, {"quantized", stats_json(r.quantized)},
                          {"int16", stats_json(r.int16)}, {"float", stats_json(r.float_)}});
        }
        std::string text = "# sensitivity analysis: nodes whose output cosine when quantized alone is below " + detail::fmt(pick_threshold) +
                           "; each row changes only that node's inputs in the fully quantized model\n";
        if (rows.empty()) text += "# no node is below the threshold\n";
        if (fallback) text += "# no node is below the threshold: the " + std::to_string(rows.size()) + " most sensitive nodes are shown\n";
        write("sensitivity_analysis/sensitivity_analysis.log", text + detail::text_table(head, table));
        write("sensitivity_analysis/sensitivity_analysis.json", js.dump(1));
        summary_["sensitivity_analysis"] = {{"pick_threshold", pick_threshold}, {"fallback_top_k", fallback}, {"rows", js}};
        std::string html = "<h2>Sensitivity analysis</h2>\n<p>Nodes whose output cosine when quantized alone is below " +
                           detail::fmt(pick_threshold) + ": the fully quantized model's output " + metric_name(m) +
                           " when that node's inputs are raised to int16, or kept float (gain: positive = better).</p>\n";
        if (fallback) html += "<p>No node is below the threshold; the " + std::to_string(rows.size()) + " most sensitive nodes are shown.</p>\n";
        html += rows.empty() ? "<p>No node is below the threshold.</p>\n" : detail::html_table(head, table);
        sections_.push_back(html);
        return rows;
    }

    /// Writes index.html and summary.json; returns the index path.
    std::string finish(const std::string& model_name) {
        const ErrorStats q = quantized_model_error(session_);
        summary_["quantized_model"] = stats_json(q);
        std::ostringstream h;
        h << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>bpuq debug: " << svg::escape(model_name) << "</title>\n"
          << "<style>body{font-family:sans-serif;margin:24px;max-width:1000px}table{border-collapse:collapse;margin:8px 0}"
             "td,th{border:1px solid #ccc;padding:2px 8px;font-size:12px;text-align:left;max-width:460px;overflow-wrap:anywhere}th{background:#f0f0f0}svg{display:block;"
             "margin:8px 0;border:1px solid #eee}</style></head><body>\n"
          << "<h1>bpuq accuracy debug: " << svg::escape(model_name) << "</h1>\n<p>" << session_.samples() << " samples; compared output(s): "
          << svg::escape(join(session_.compared_names())) << "; fully quantized model vs float: cosine " << detail::fmt(q.cosine) << ", SQNR "
          << detail::fmt(q.sqnr_db) << " dB, Chebyshev " << detail::fmt(q.chebyshev) << ". Metrics are "
          << (session_.options().average_mode ? "means over samples" : "the worst sample's") << ".</p>\n";
        for (const auto& s : sections_) h << s;
        h << "</body></html>\n";
        write("summary.json", summary_.dump(1));
        write("index.html", h.str());
        return (std::filesystem::path(dir_) / "index.html").string();
    }

private:
    static std::string join(const std::vector<std::string>& v) {
        std::string s;
        for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
        return s;
    }

    void write(const std::string& rel, const std::string& text) {
        const std::filesystem::path p = std::filesystem::path(dir_) / rel;
        std::filesystem::create_directories(p.parent_path());
        io::write_file_atomic(p.string(), text);
    }

    /// Both error views per node: single (quantized alone) and entire (accumulated).
    std::string views(const std::vector<SensitivityRow>& rows) {
        const Metric m = session_.options().metrics[0];
        const auto entire = entire_errors(session_);
        std::vector<std::string> points;
        svg::Series single{"single: node quantized alone (its output)", {}}, whole{"entire: everything quantized (its output)", {}};
        std::vector<std::vector<std::string>> table;
        nlohmann::json js = nlohmann::json::array();
        for (const auto& e : entire) {
            auto it = std::find_if(rows.begin(), rows.end(), [&](const SensitivityRow& r) { return r.name == e.name; });
            const double sv = it == rows.end() ? NAN : it->single.get(m);
            points.push_back(e.name);
            single.values.push_back(sv);
            whole.values.push_back(e.error.get(m));
            table.push_back({e.name, e.op_type, detail::fmt(sv), detail::fmt(e.error.get(m))});
            js.push_back({{"node", e.name}, {"type", e.op_type}, {"tensor", e.tensor},
                          {"single", it == rows.end() ? nlohmann::json() : stats_json(it->single)}, {"entire", stats_json(e.error)}});
        }
        write("node_sensitivity/node_errors.log",
              "# per node " + std::string(metric_name(m)) + " of its output vs float: single = only its inputs quantized (from float "
              "inputs); entire = the whole model quantized (accumulated)\n" +
                  detail::text_table({"node", "type", std::string("single ") + metric_name(m), std::string("entire ") + metric_name(m)}, table));
        write("node_sensitivity/node_errors.json", js.dump(1));
        summary_["node_errors"] = js;
        const std::string chart = svg::line_chart("per-node output error: single vs entire (" + std::string(metric_name(m)) + ")", points,
                                                  {single, whole}, metric_name(m));
        write("node_sensitivity/node_errors.svg", chart);
        return "<h3>Single and entire error per node</h3>\n<p>single: the node's output with only its inputs quantized; entire: the "
               "node's output in the fully quantized model (error accumulated from upstream). <a href=\"node_sensitivity/node_errors.log\">"
               "table</a></p>\n" + chart;
    }

    const DebugSession& session_;
    std::string dir_;
    nlohmann::json summary_;
    std::vector<std::string> sections_;
};

}  // namespace debug
BPUQ_NAMESPACE_END
