// bpuq graph IR -> ONNX ModelProto (and .onnx files). Fused Conv activations are written
// back as separate Relu/Clip nodes so the result is plain ai.onnx.
#pragma once

#include <onnx/onnx_pb.h>

#include <fstream>
#include <set>
#include <limits>
#include <string>

#include "../graph/ir.hpp"
#include "tensor_proto.hpp"

BPUQ_NAMESPACE_BEGIN

namespace onnx_io {

namespace detail {

inline void fill_value_info(::onnx::ValueInfoProto& vi, const graph::Value& v) {
    vi.set_name(v.name);
    auto* tt = vi.mutable_type()->mutable_tensor_type();
    tt->set_elem_type(dtype_to_onnx(v.has_dtype ? v.dtype : DType::float32));
    if (!v.has_shape) return;
    auto* shape = tt->mutable_shape();
    for (std::size_t i = 0; i < v.shape.size(); ++i) {
        auto* d = shape->add_dim();
        if (v.shape[i] >= 0) d->set_dim_value(v.shape[i]);
        else if (i < v.dim_params.size() && !v.dim_params[i].empty()) d->set_dim_param(v.dim_params[i]);
    }
}

inline void fill_attribute(::onnx::AttributeProto& a, const std::string& name, const graph::Attribute& v) {
    using K = graph::Attribute::Kind;
    using AP = ::onnx::AttributeProto;
    a.set_name(name);
    switch (v.kind) {
        case K::float_: a.set_type(AP::FLOAT); a.set_f(v.f); break;
        case K::int_: a.set_type(AP::INT); a.set_i(v.i); break;
        case K::string_: a.set_type(AP::STRING); a.set_s(v.s); break;
        case K::tensor: a.set_type(AP::TENSOR); *a.mutable_t() = tensor_to_proto(v.t, ""); break;
        case K::floats: a.set_type(AP::FLOATS); for (float f : v.floats) a.add_floats(f); break;
        case K::ints: a.set_type(AP::INTS); for (auto i : v.ints) a.add_ints(i); break;
        case K::strings: a.set_type(AP::STRINGS); for (const auto& s : v.strings) a.add_strings(s); break;
    }
}

}  // namespace detail

/// Builds a ModelProto (IR version and opset as in the graph; the IR version is raised to
/// what the opset needs).
inline ::onnx::ModelProto export_model(const graph::Graph& g) {
    ::onnx::ModelProto m;
    // lowest IR version that knows the opset (ONNX's versioning table)
    const std::int64_t min_ir = g.opset >= 19 ? 9 : g.opset >= 15 ? 8 : g.opset >= 13 ? 7 : g.opset >= 11 ? 6 : g.opset >= 10 ? 5 : g.opset >= 9 ? 4 : 3;
    m.set_ir_version(std::max(g.ir_version, min_ir));
    m.set_producer_name("bpuq");
    m.set_producer_version("0.1.0");
    auto* op = m.add_opset_import();
    op->set_domain("");
    op->set_version(g.opset);
    std::set<std::string> domains;  // custom domains used by nodes (ai.bpuq in calibrated models)
    for (const auto& n : g.nodes)
        if (!n.domain.empty() && n.domain != "ai.onnx") domains.insert(n.domain);
    for (const auto& d : domains) {
        auto* extra = m.add_opset_import();
        extra->set_domain(d);
        extra->set_version(1);
    }
    auto* gp = m.mutable_graph();
    gp->set_name(g.name.empty() ? "bpuq_graph" : g.name);
    for (const auto& kv : g.initializers) *gp->add_initializer() = tensor_to_proto(kv.second, kv.first);
    auto value_of = [&](const std::string& name) {
        const graph::Value* v = g.find_value(name);
        graph::Value r = v ? *v : graph::Value{};
        r.name = name;
        return r;
    };
    for (const auto& in : g.inputs) detail::fill_value_info(*gp->add_input(), value_of(in));
    if (m.ir_version() < 4)  // before IR 4 every initializer must also be a graph input
        for (const auto& kv : g.initializers) {
            graph::Value v;
            v.name = kv.first;
            v.dtype = kv.second.dtype();
            v.has_dtype = true;
            v.shape = kv.second.shape();
            v.has_shape = true;
            detail::fill_value_info(*gp->add_input(), v);
        }
    for (const auto& out : g.outputs) detail::fill_value_info(*gp->add_output(), value_of(out));
    std::set<std::string> declared(g.inputs.begin(), g.inputs.end());
    declared.insert(g.outputs.begin(), g.outputs.end());
    for (const auto& kv : g.initializers) declared.insert(kv.first);
    for (const auto& n : g.nodes) {
        auto* np = gp->add_node();
        np->set_name(n.name);
        np->set_op_type(n.op_type);
        if (!n.domain.empty()) np->set_domain(n.domain);
        for (const auto& i : n.inputs) np->add_input(i);
        std::string act;
        float lo = 0, hi = 0;
        for (const auto& kv : n.attributes) {
            if (kv.first == "bpuq_activation") act = kv.second.s;
            else if (kv.first == "bpuq_clip_min") lo = kv.second.f;
            else if (kv.first == "bpuq_clip_max") hi = kv.second.f;
            else detail::fill_attribute(*np->add_attribute(), kv.first, kv.second);
        }
        if (act.empty()) {
            for (const auto& o : n.outputs) np->add_output(o);
        } else {
            // the fused activation becomes its own node again
            const std::string pre = n.outputs[0] + "_preact";
            np->add_output(pre);
            for (std::size_t i = 1; i < n.outputs.size(); ++i) np->add_output(n.outputs[i]);
            auto* a = gp->add_node();
            a->set_name(n.name + "_" + act);
            a->set_op_type(act);
            a->add_input(pre);
            a->add_output(n.outputs[0]);
            if (act == "Clip") {
                if (g.opset < 11) {
                    detail::fill_attribute(*a->add_attribute(), "min", graph::Attribute::make_float(lo));
                    detail::fill_attribute(*a->add_attribute(), "max", graph::Attribute::make_float(hi));
                } else {
                    const std::string lo_name = n.name + "_clip_min", hi_name = n.name + "_clip_max";
                    *gp->add_initializer() = tensor_to_proto(Tensor::from_vector<float>({}, {lo}), lo_name);
                    *gp->add_initializer() = tensor_to_proto(Tensor::from_vector<float>({}, {hi}), hi_name);
                    a->add_input(lo_name);
                    a->add_input(hi_name);
                }
            }
        }
        for (const auto& o : n.outputs) {
            const graph::Value* v = g.find_value(o);
            if (!o.empty() && !declared.count(o) && v && v->has_dtype) detail::fill_value_info(*gp->add_value_info(), *v);
        }
    }
    return m;
}

/// Writes the model as an .onnx file (all tensors inline).
inline void save_model(const graph::Graph& g, const std::string& path) {
    const ::onnx::ModelProto m = export_model(g);
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    BPUQ_CHECK(f.good(), "onnx.open", "cannot create ONNX model '" + path + "'");
    BPUQ_CHECK(m.SerializeToOstream(&f), "onnx.write", "failed writing ONNX model '" + path + "'");
}

}  // namespace onnx_io

BPUQ_NAMESPACE_END
