// ONNX ModelProto -> bpuq graph IR: files, bytes or a parsed proto; validation of IR and
// opset versions, initializers, attributes, value_info, edges and supported operators.
#pragma once

#include <onnx/onnx_pb.h>

#include <google/protobuf/io/coded_stream.h>

#include <fstream>
#include <string>

#include "../graph/ir.hpp"
#include "../graph/op_registry.hpp"
#include "../graph/shape_inference.hpp"
#include "tensor_proto.hpp"

BPUQ_NAMESPACE_BEGIN

namespace onnx_io {

struct ImportOptions {
    /// Reject graphs with operators the executor does not implement (graph.unsupported).
    bool require_supported_ops = true;
    /// Run shape inference after import.
    bool infer_shapes = true;
};

namespace detail {

inline graph::Value value_from_proto(const ::onnx::ValueInfoProto& vi) {
    graph::Value v;
    v.name = vi.name();
    if (!vi.type().has_tensor_type()) return v;
    const auto& tt = vi.type().tensor_type();
    DType t{};
    if (tt.elem_type() != 0 && dtype_from_onnx(tt.elem_type(), t)) {
        v.dtype = t;
        v.has_dtype = true;
    }
    if (tt.has_shape()) {
        v.has_shape = true;
        for (const auto& d : tt.shape().dim()) {
            v.shape.push_back(d.has_dim_value() ? d.dim_value() : -1);
            v.dim_params.push_back(d.has_dim_param() ? d.dim_param() : "");
        }
    }
    return v;
}

inline graph::Attribute attribute_from_proto(const ::onnx::AttributeProto& a, const std::string& node,
                                             const std::string& model_dir) {
    using AP = ::onnx::AttributeProto;
    switch (a.type()) {
        case AP::FLOAT: return graph::Attribute::make_float(a.f());
        case AP::INT: return graph::Attribute::make_int(a.i());
        case AP::STRING: return graph::Attribute::make_string(a.s());
        case AP::TENSOR: return graph::Attribute::make_tensor(tensor_from_proto(a.t(), model_dir, "attribute " + a.name() + " of node '" + node + "'"));
        case AP::FLOATS: return graph::Attribute::make_floats({a.floats().begin(), a.floats().end()});
        case AP::INTS: return graph::Attribute::make_ints({a.ints().begin(), a.ints().end()});
        case AP::STRINGS: return graph::Attribute::make_strings({a.strings().begin(), a.strings().end()});
        default: break;
    }
    BPUQ_THROW("onnx.attribute", "node '" + node + "' attribute '" + a.name() + "' has type " +
                                     AP::AttributeType_Name(a.type()) +
                                     "; supported: FLOAT, INT, STRING, TENSOR, FLOATS, INTS, STRINGS (no subgraphs)");
}

}  // namespace detail

/// Converts a parsed model. `model_dir` is the folder external data is resolved in.
inline graph::Graph import_model(const ::onnx::ModelProto& m, const std::string& model_dir,
                                 const ImportOptions& opt = {}, const std::string& origin = "model") {
    BPUQ_CHECK(m.ir_version() >= 3 && m.ir_version() <= 9, "onnx.ir_version",
               origin + " has IR version " + std::to_string(m.ir_version()) + "; supported: 3 to 9");
    graph::Graph g;
    g.ir_version = m.ir_version();
    g.producer = m.producer_name();
    std::int64_t opset = -1;
    for (const auto& o : m.opset_import())
        if (o.domain().empty() || o.domain() == "ai.onnx") opset = o.version();
    // 7-20 is the supported range; older models load when every op they use is unchanged
    // since (checked per node by require_op)
    BPUQ_CHECK(opset >= 1 && opset <= 20, "onnx.opset",
               origin + " imports ai.onnx opset " + std::to_string(opset) + "; supported: 7 to 20 (older only for ops unchanged since)");
    g.opset = opset;
    BPUQ_CHECK(m.has_graph(), "onnx.graph", origin + " has no graph");
    const auto& gp = m.graph();
    g.name = gp.name();

    for (const auto& t : gp.initializer()) {
        BPUQ_CHECK(!t.name().empty(), "onnx.initializer", origin + " has an unnamed initializer");
        BPUQ_CHECK(!g.initializers.count(t.name()), "onnx.initializer",
                   origin + " has two initializers named '" + t.name() + "'");
        g.initializers[t.name()] = tensor_from_proto(t, model_dir, "initializer");
    }
    BPUQ_CHECK(gp.sparse_initializer_size() == 0, "onnx.initializer", origin + " has sparse initializers (unsupported)");
    for (const auto& vi : gp.value_info()) g.values[vi.name()] = detail::value_from_proto(vi);
    for (const auto& vi : gp.input()) {
        g.values[vi.name()] = detail::value_from_proto(vi);
        if (!g.initializers.count(vi.name())) g.inputs.push_back(vi.name());  // IR < 4 lists initializers as inputs
    }
    for (const auto& vi : gp.output()) {
        g.values[vi.name()] = detail::value_from_proto(vi);
        g.outputs.push_back(vi.name());
    }
    for (const auto& np : gp.node()) {
        graph::Node n;
        n.name = np.name();
        n.op_type = np.op_type();
        n.domain = np.domain() == "ai.onnx" ? "" : np.domain();
        n.inputs.assign(np.input().begin(), np.input().end());
        n.outputs.assign(np.output().begin(), np.output().end());
        const std::string label = n.name.empty() ? n.op_type : n.name;
        for (const auto& a : np.attribute()) {
            if (!a.ref_attr_name().empty())
                BPUQ_THROW("onnx.attribute", "node '" + label + "' attribute '" + a.name() + "' refers to a function attribute (unsupported)");
            n.attributes[a.name()] = detail::attribute_from_proto(a, label, model_dir);
        }
        g.nodes.push_back(std::move(n));
    }
    g.name_nodes();
    g.sort();
    if (opt.require_supported_ops)
        for (const auto& n : g.nodes) graph::require_op(n, g.opset);
    if (opt.infer_shapes && opt.require_supported_ops) graph::infer_shapes(g);
    return g;
}

/// Parses and imports a model from memory (no external data).
inline graph::Graph import_model_bytes(const void* data, std::size_t size, const ImportOptions& opt = {},
                                       const std::string& origin = "model bytes", const std::string& model_dir = "") {
    ::onnx::ModelProto m;
    google::protobuf::io::CodedInputStream in(static_cast<const std::uint8_t*>(data), int(std::min<std::size_t>(size, INT_MAX)));
    in.SetTotalBytesLimit(INT_MAX);
    BPUQ_CHECK(size <= std::size_t(INT_MAX) && m.ParseFromCodedStream(&in) && in.ConsumedEntireMessage(), "onnx.parse",
               origin + " is not a valid ONNX ModelProto (protobuf parse failed; truncated or not an .onnx file?)");
    return import_model(m, model_dir, opt, origin);
}

/// Loads an .onnx file; external data is resolved relative to (and confined to) its folder.
inline graph::Graph load_model(const std::string& path, const ImportOptions& opt = {}) {
    std::ifstream f(path, std::ios::binary);
    BPUQ_CHECK(f.good(), "onnx.open", "cannot open ONNX model '" + path + "'");
    const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    BPUQ_CHECK(!bytes.empty(), "onnx.parse", "ONNX model '" + path + "' is empty");
    const std::size_t slash = path.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
    return import_model_bytes(bytes.data(), bytes.size(), opt, "ONNX model '" + path + "'", dir);
}

}  // namespace onnx_io

BPUQ_NAMESPACE_END
