// Small helpers to build graphs in tests.
#pragma once

#include <bpuq/graph.hpp>

#include <string>
#include <vector>

namespace bpuq_test {

inline bpuq::graph::Node make_node(const std::string& op, std::vector<std::string> in, std::vector<std::string> out,
                                   const std::string& name = "") {
    bpuq::graph::Node n;
    n.op_type = op;
    n.name = name.empty() ? op + "_" + out.at(0) : name;
    n.inputs = std::move(in);
    n.outputs = std::move(out);
    return n;
}

inline void declare_input(bpuq::graph::Graph& g, const std::string& name, bpuq::Shape shape,
                          bpuq::DType t = bpuq::DType::float32) {
    g.inputs.push_back(name);
    auto& v = g.value(name);
    v.dtype = t;
    v.has_dtype = true;
    v.shape = std::move(shape);
    v.has_shape = true;
}

}  // namespace bpuq_test
